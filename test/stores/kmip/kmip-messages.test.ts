import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { Operation, ResultReason, ResultStatus } from '../../../src/stores/kmip/kmip-enums.js';
import {
  KmipProtocolError,
  get,
  locate,
  nameAttribute,
  objectGroupAttribute,
  readLocated,
  readResponseMessage,
  registerSecretData,
  requestMessage,
  applicationSpecificInformationAttribute,
} from '../../../src/stores/kmip/kmip-messages.js';
import { decodeTtlv, encodeTtlv } from '../../../src/stores/kmip/ttlv-codec.js';

/** PyKMIP's own message classes (python3-pykmip), as an independent reading of the spec. */
function pykmip(script: string, input = ''): string {
  return execFileSync('/usr/bin/python3', ['-c', script], { input, encoding: 'utf8' }).trim();
}

describe('KMIP messages', () => {
  it("encodes a batch PyKMIP's message parser reads back field for field", () => {
    const material = Buffer.from('-----BEGIN PGP PRIVATE KEY BLOCK-----\nabc\n');
    const wire = encodeTtlv(
      requestMessage([
        registerSecretData(1, material, [nameAttribute('ekm1-fp-x'), objectGroupAttribute('ekm1-owner-y'), applicationSpecificInformationAttribute('flowcrypt-ekm', 'private-key-v1')]),
        locate([objectGroupAttribute('ekm1-owner-y')], 5),
        get('42'),
      ]),
    );
    const read = JSON.parse(
      pykmip(
        `
import sys, json, binascii
from kmip.core.messages import messages
from kmip.core import utils
m = messages.RequestMessage()
m.read(utils.BytearrayStream(binascii.unhexlify(sys.stdin.read().strip())))
h = m.request_header
reg, loc, get = [b.request_payload for b in m.batch_items]
print(json.dumps({
  "version": [h.protocol_version.major, h.protocol_version.minor],
  "count": h.batch_count.value,
  "continue": h.batch_error_cont_option.value.name,
  "ops": [b.operation.value.name for b in m.batch_items],
  "ids": [binascii.hexlify(b.unique_batch_item_id.value).decode() for b in m.batch_items],
  "objectType": reg.object_type.name,
  "material": binascii.hexlify(reg.managed_object.key_block.key_value.key_material.value).decode(),
  "attributes": [a.attribute_name.value for a in reg.template_attribute.attributes],
  "name": reg.template_attribute.attributes[0].attribute_value.name_value.value,
  "locateMax": loc.maximum_items,
  "getId": get.unique_identifier,
}))
`,
        wire.toString('hex'),
      ),
    );
    assert.deepEqual(read, {
      version: [1, 0],
      count: 3,
      continue: 'CONTINUE',
      ops: ['REGISTER', 'LOCATE', 'GET'],
      ids: ['00000000', '00000001', '00000002'],
      objectType: 'SECRET_DATA',
      material: material.toString('hex'),
      attributes: ['Name', 'Object Group', 'Application Specific Information'],
      name: 'ekm1-fp-x',
      locateMax: 5,
      getId: '42',
    });
  });

  it('reads a response PyKMIP encodes, failed items included', () => {
    const hex = pykmip(`
import binascii
from kmip.core.messages import messages, payloads, contents
from kmip.core import enums, utils
header = messages.ResponseHeader(protocol_version=contents.ProtocolVersion(1, 0), time_stamp=contents.TimeStamp(1700000000), batch_count=contents.BatchCount(2))
ok = messages.ResponseBatchItem(operation=contents.Operation(enums.Operation.LOCATE), unique_batch_item_id=contents.UniqueBatchItemID(b'\\x00\\x00\\x00\\x00'),
  result_status=contents.ResultStatus(enums.ResultStatus.SUCCESS), response_payload=payloads.LocateResponsePayload(unique_identifiers=['7', '9']))
bad = messages.ResponseBatchItem(operation=contents.Operation(enums.Operation.GET), unique_batch_item_id=contents.UniqueBatchItemID(b'\\x00\\x00\\x00\\x01'),
  result_status=contents.ResultStatus(enums.ResultStatus.OPERATION_FAILED), result_reason=contents.ResultReason(enums.ResultReason.ITEM_NOT_FOUND),
  result_message=contents.ResultMessage('Could not locate object: 3'))
s = utils.BytearrayStream()
messages.ResponseMessage(response_header=header, batch_items=[ok, bad]).write(s)
print(binascii.hexlify(s.buffer).decode())
`);
    const response = readResponseMessage(decodeTtlv(Buffer.from(hex, 'hex')), 2);
    assert.equal(response.timeStamp, 1700000000n);
    assert.equal(response.items[0]!.operation, Operation.Locate);
    assert.equal(response.items[0]!.status, ResultStatus.Success);
    assert.deepEqual(readLocated(response.items[0]!.payload), ['7', '9']);
    assert.equal(response.items[1]!.status, ResultStatus.OperationFailed);
    assert.equal(response.items[1]!.reason, ResultReason.ItemNotFound);
    assert.equal(response.items[1]!.message, 'Could not locate object: 3');
  });

  it('refuses a well-formed TTLV that is not a response to the request', () => {
    const request = requestMessage([get('1')]);
    assert.throws(() => readResponseMessage(request, 1), KmipProtocolError);
    assert.throws(() => readResponseMessage({ tag: 0x42007b, type: 'Structure', value: [] }, 1), KmipProtocolError);
  });
});
