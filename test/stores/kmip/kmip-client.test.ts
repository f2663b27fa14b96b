import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { KmipClient } from '../../../src/stores/kmip/kmip-client.js';
import { KmipUnavailableError } from '../../../src/stores/kmip/kmip-errors.js';
import { Operation, ResultStatus, Tag } from '../../../src/stores/kmip/kmip-enums.js';
import { enumeration, integer, queryOperations, registerSecretData, structure, text } from '../../../src/stores/kmip/kmip-messages.js';
import { encodeTtlv } from '../../../src/stores/kmip/ttlv-codec.js';
import { loadKeystore } from '../../../src/tls/pkcs12.js';
import { TestPki } from '../../../testbed/test-pki.js';

/**
 * The client against a misbehaving TLS peer (garbage, silence, oversized or doubled answers): what
 * PyKMIP cannot be made to do. Each case must end in a KmipUnavailableError within the timeout and
 * a connection that is never used again.
 */
/** A successful answer to a Query. */
const queryAnswer = encodeTtlv(
  structure(
    Tag.ResponseMessage,
    structure(Tag.ResponseHeader, structure(Tag.ProtocolVersion, integer(Tag.ProtocolVersionMajor, 1), integer(Tag.ProtocolVersionMinor, 0)), { tag: Tag.TimeStamp, type: 'DateTime', value: 1n }, integer(Tag.BatchCount, 1)),
    structure(Tag.BatchItem, enumeration(Tag.Operation, Operation.Query), enumeration(Tag.ResultStatus, ResultStatus.Success), structure(Tag.ResponsePayload)),
  ),
);

describe('KMIP client against a misbehaving server', () => {
  const pki = new TestPki('Misbehaving KMIP CA');
  let server: tls.Server;
  let port: number;
  let behaviour: (socket: tls.TLSSocket) => void;
  let connections = 0;
  let closed = 0;

  before(async () => {
    const cert = pki.issue('bad-kmip', { hosts: ['127.0.0.1'] });
    server = tls.createServer({ key: cert.keyPem, cert: cert.certPem, ca: pki.caCertPem, requestCert: true, rejectUnauthorized: true }, (socket) => {
      connections++;
      socket.on('close', () => closed++);
      socket.on('error', () => undefined);
      socket.on('data', () => behaviour(socket));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as { port: number }).port;
  });
  after(async () => {
    server.close();
    pki.remove();
  });

  const client = () =>
    new KmipClient({
      host: '127.0.0.1',
      port,
      identity: loadKeystore({ property: 'store.kmip.key.file', file: pki.pkcs12(pki.issue('c', { clientAuth: true }), 'pw', 'openssl'), password: 'pw' }),
      truststore: [pki.caCertPem],
      truststoreFile: 'test',
      pool: { maxConnections: 2, connectTimeoutMs: 1000, requestTimeoutMs: 1500, idleTimeoutMs: 10_000 },
    });

  it('reuses pooled connections: one for sequential requests, at most maxConnections for concurrent ones', async () => {
    behaviour = (s) => setTimeout(() => s.write(queryAnswer), 20);
    const c = client();
    const before = connections;
    for (let i = 0; i < 10; i++) await c.one(queryOperations(), 'Query');
    assert.equal(connections - before, 1);
    await Promise.all(Array.from({ length: 10 }, () => c.one(queryOperations(), 'Query')));
    assert.equal(connections - before, 2);
    await c.close();
    while (closed < connections) await new Promise((r) => setTimeout(r, 10));
  });

  it('repeats a read once on a new connection when a pooled one dies under it, but never a write', async () => {
    const answer = (operation: number) =>
      encodeTtlv(
        structure(
          Tag.ResponseMessage,
          structure(Tag.ResponseHeader, structure(Tag.ProtocolVersion, integer(Tag.ProtocolVersionMajor, 1), integer(Tag.ProtocolVersionMinor, 0)), { tag: Tag.TimeStamp, type: 'DateTime', value: 1n }, integer(Tag.BatchCount, 1)),
          structure(Tag.BatchItem, enumeration(Tag.Operation, operation), enumeration(Tag.ResultStatus, ResultStatus.Success), structure(Tag.ResponsePayload, text(Tag.UniqueIdentifier, '1'))),
        ),
      );
    // Each connection answers its first request and hangs up on the second, as a restarted server would.
    const served = new WeakMap<tls.TLSSocket, number>();
    behaviour = (s) => {
      const n = (served.get(s) ?? 0) + 1;
      served.set(s, n);
      if (n === 1) s.write(answer(Operation.Query));
      else s.destroy();
    };
    const c = client();
    const before = connections;
    await c.one(queryOperations(), 'Query');
    await c.one(queryOperations(), 'Query');
    assert.equal(connections - before, 2, 'the read was repeated on a second connection');
    await assert.rejects(c.one(registerSecretData(1, Buffer.from('x'), []), 'Register'), KmipUnavailableError);
    assert.equal(connections - before, 2, 'the write was not repeated');
    await c.close();
    while (closed < connections) await new Promise((r) => setTimeout(r, 10));
  });

  const cases: [string, (socket: tls.TLSSocket) => void, RegExp][] = [
    ['well-framed garbage', (s) => s.write(Buffer.concat([Buffer.from('42007b01000000080000000000000000', 'hex')])), /could not be read/],
    ['a TTLV item of an unknown type', (s) => s.write(Buffer.from('42007b0f000000080000000000000000', 'hex')), /could not be read/],
    ['an announced answer over the limit', (s) => s.write(Buffer.from('42007b01ffffff00', 'hex')), /over the \d+-byte limit/],
    ['silence', () => undefined, /did not answer within 1\d{3} ms/],
    ['a hang-up', (s) => s.destroy(), /closed the connection|reset/],
    ['two answers to one request', (s) => s.write(Buffer.concat([queryAnswer, queryAnswer])), /more than one answer/],
  ];
  for (const [name, act, message] of cases) {
    it(`fails on ${name} within the timeout and drops the connection`, async () => {
      behaviour = act;
      const c = client();
      const before = { connections, closed };
      const started = Date.now();
      await assert.rejects(c.one(queryOperations(), 'Query'), (e: unknown) => {
        assert.ok(e instanceof KmipUnavailableError, String(e));
        assert.match(e.message, message);
        return true;
      });
      assert.ok(Date.now() - started < 2500);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(closed - before.closed, connections - before.connections, 'every connection used was closed');
      await c.close();
    });
  }
});
