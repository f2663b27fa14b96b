import { BatchErrorContinuationOption, KeyFormatType, NameType, Operation, ObjectType, QueryFunction, Tag, type OperationCode } from './kmip-enums.js';
import type { TtlvItem } from './ttlv-codec.js';

/**
 * KMIP 1.0 request and response messages (spec section 7) and the payloads of the operations the
 * EKM uses (section 4). Builders return TtlvItems; readers take decoded TtlvItems and throw
 * KmipProtocolError when the server's answer does not have the shape the spec gives it.
 */

/** The server's answer is well-formed TTLV but not a KMIP message we can use. */
export class KmipProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KmipProtocolError';
  }
}

// Item builders.
export const structure = (tag: number, ...value: TtlvItem[]): TtlvItem => ({ tag, type: 'Structure', value });
export const text = (tag: number, value: string): TtlvItem => ({ tag, type: 'TextString', value });
export const bytes = (tag: number, value: Uint8Array): TtlvItem => ({ tag, type: 'ByteString', value });
export const integer = (tag: number, value: number): TtlvItem => ({ tag, type: 'Integer', value });
export const enumeration = (tag: number, value: number): TtlvItem => ({ tag, type: 'Enumeration', value });

/** One attribute as section 2.1.1 gives it: a name and a value whose type depends on the name. */
export interface KmipAttribute {
  readonly name: string;
  readonly value: TtlvItem;
}

/** Section 3 attribute Name: an uninterpreted text string. */
export function nameAttribute(value: string): KmipAttribute {
  return {
    name: 'Name',
    value: structure(Tag.AttributeValue, text(Tag.NameValue, value), enumeration(Tag.NameType, NameType.UninterpretedTextString)),
  };
}

/** Section 3 attribute Object Group. */
export function objectGroupAttribute(value: string): KmipAttribute {
  return { name: 'Object Group', value: text(Tag.AttributeValue, value) };
}

/** Section 3 attribute Application Specific Information. */
export function applicationSpecificInformationAttribute(namespace: string, data: string): KmipAttribute {
  return {
    name: 'Application Specific Information',
    value: structure(Tag.AttributeValue, text(Tag.ApplicationNamespace, namespace), text(Tag.ApplicationData, data)),
  };
}

/** Section 3 attribute Object Type. */
export function objectTypeAttribute(objectType: number): KmipAttribute {
  return { name: 'Object Type', value: enumeration(Tag.AttributeValue, objectType) };
}

function encodeAttribute(attribute: KmipAttribute, index?: number): TtlvItem {
  if (index === undefined || index === 0) return structure(Tag.Attribute, text(Tag.AttributeName, attribute.name), attribute.value);
  return structure(Tag.Attribute, text(Tag.AttributeName, attribute.name), integer(Tag.AttributeIndex, index), attribute.value);
}

/**
 * Attributes numbered per name (section 2.1.1 Attribute Index): the second and later instances of a
 * multi-instance attribute such as Name carry 1, 2, ...; PyKMIP refuses an unnumbered repeat.
 */
function encodeIndexedAttributes(attributes: readonly KmipAttribute[]): TtlvItem[] {
  const seen = new Map<string, number>();
  return attributes.map((attribute) => {
    const index = seen.get(attribute.name) ?? 0;
    seen.set(attribute.name, index + 1);
    return encodeAttribute(attribute, index);
  });
}

/** A request batch item: an operation and the children of its Request Payload. */
export interface BatchItemRequest {
  readonly operation: OperationCode;
  readonly payload: readonly TtlvItem[];
}

/**
 * Section 7 Request Message, protocol version 1.0. Batches carry Unique Batch Item IDs (required
 * with more than one item) and ask the server to continue after a failed item, so one vanished
 * object does not hide the results of the others. No Time Stamp is sent: servers (PyKMIP) refuse a
 * request whose stamp is over 60 s off their clock, and the stamp is optional.
 */
export function requestMessage(items: readonly BatchItemRequest[], maximumResponseSize?: number): TtlvItem {
  if (items.length === 0) throw new TypeError('A KMIP request needs at least one batch item');
  const header: TtlvItem[] = [
    structure(Tag.ProtocolVersion, integer(Tag.ProtocolVersionMajor, 1), integer(Tag.ProtocolVersionMinor, 0)),
  ];
  if (maximumResponseSize !== undefined) header.push(integer(Tag.MaximumResponseSize, maximumResponseSize));
  if (items.length > 1) header.push(enumeration(Tag.BatchErrorContinuationOption, BatchErrorContinuationOption.Continue));
  header.push(integer(Tag.BatchCount, items.length));
  return structure(
    Tag.RequestMessage,
    structure(Tag.RequestHeader, ...header),
    ...items.map((item, i) =>
      structure(
        Tag.BatchItem,
        enumeration(Tag.Operation, item.operation),
        ...(items.length > 1 ? [bytes(Tag.UniqueBatchItemId, batchItemId(i))] : []),
        structure(Tag.RequestPayload, ...item.payload),
      ),
    ),
  );
}

function batchItemId(index: number): Uint8Array {
  const id = Buffer.alloc(4);
  id.writeUInt32BE(index);
  return id;
}

/** One batch item of a response, in the order of the request's items. */
export interface BatchItemResult {
  readonly operation: number | undefined;
  readonly status: number;
  readonly reason: number | undefined;
  /** The server's own words; may be shown to operators, never contains our secrets. */
  readonly message: string | undefined;
  readonly payload: TtlvItem | undefined;
}

export interface ResponseMessage {
  /** The server's clock, seconds since the epoch. */
  readonly timeStamp: bigint;
  readonly items: readonly BatchItemResult[];
}

/**
 * Section 7 Response Message. Items come back matched to the request by Unique Batch Item ID
 * when there is one; a server that stopped early (Batch Error Continuation Option) returns fewer.
 */
export function readResponseMessage(message: TtlvItem, requestItems: number): ResponseMessage {
  if (message.tag !== Tag.ResponseMessage || message.type !== 'Structure') throw new KmipProtocolError('the answer is not a KMIP Response Message');
  const header = child(message, Tag.ResponseHeader, 'Structure');
  const timeStamp = child(header, Tag.TimeStamp, 'DateTime').value;
  const batchItems = children(message, Tag.BatchItem);
  const items: BatchItemResult[] = [];
  for (const [i, item] of batchItems.entries()) {
    if (item.type !== 'Structure') throw new KmipProtocolError('a Batch Item is not a structure');
    const id = optionalChild(item, Tag.UniqueBatchItemId, 'ByteString');
    const expected = batchItemId(i);
    if (requestItems > 1 && id !== undefined && !Buffer.from(id.value).equals(expected)) {
      throw new KmipProtocolError('the response batch items are not in request order');
    }
    items.push({
      operation: optionalChild(item, Tag.Operation, 'Enumeration')?.value,
      status: child(item, Tag.ResultStatus, 'Enumeration').value,
      reason: optionalChild(item, Tag.ResultReason, 'Enumeration')?.value,
      message: optionalChild(item, Tag.ResultMessage, 'TextString')?.value,
      payload: optionalChild(item, Tag.ResponsePayload, 'Structure'),
    });
  }
  if (items.length === 0 || items.length > requestItems) {
    throw new KmipProtocolError(`the response has ${items.length} batch items for a request of ${requestItems}`);
  }
  return { timeStamp, items };
}

// Operations (section 4).

/** Section 4.3 Register of a Secret Data object (section 2.2.7) holding `material` as an opaque key block. */
export function registerSecretData(secretDataType: number, material: Uint8Array, attributes: readonly KmipAttribute[]): BatchItemRequest {
  return {
    operation: Operation.Register,
    payload: [
      enumeration(Tag.ObjectType, ObjectType.SecretData),
      structure(Tag.TemplateAttribute, ...encodeIndexedAttributes(attributes)),
      structure(
        Tag.SecretData,
        enumeration(Tag.SecretDataType, secretDataType),
        structure(
          Tag.KeyBlock,
          enumeration(Tag.KeyFormatType, KeyFormatType.Opaque),
          structure(Tag.KeyValue, bytes(Tag.KeyMaterial, material)),
        ),
      ),
    ],
  };
}

/** Section 4.8 Locate: the identifiers of objects that have all these attributes. */
export function locate(attributes: readonly KmipAttribute[], maximumItems?: number): BatchItemRequest {
  return {
    operation: Operation.Locate,
    payload: [...(maximumItems === undefined ? [] : [integer(Tag.MaximumItems, maximumItems)]), ...attributes.map((a) => encodeAttribute(a))],
  };
}

/** Section 4.10 Get. */
export function get(uniqueIdentifier: string): BatchItemRequest {
  return { operation: Operation.Get, payload: [text(Tag.UniqueIdentifier, uniqueIdentifier)] };
}

/** Section 4.11 Get Attributes. */
export function getAttributes(uniqueIdentifier: string, names: readonly string[]): BatchItemRequest {
  return { operation: Operation.GetAttributes, payload: [text(Tag.UniqueIdentifier, uniqueIdentifier), ...names.map((n) => text(Tag.AttributeName, n))] };
}

/** Section 4.20 Destroy. */
export function destroy(uniqueIdentifier: string): BatchItemRequest {
  return { operation: Operation.Destroy, payload: [text(Tag.UniqueIdentifier, uniqueIdentifier)] };
}

/** Section 4.24 Query: which operations the server supports. */
export function queryOperations(): BatchItemRequest {
  return { operation: Operation.Query, payload: [enumeration(Tag.QueryFunction, QueryFunction.QueryOperations)] };
}

/** The Unique Identifier of a Register (or Destroy) response payload. */
export function readUniqueIdentifier(payload: TtlvItem | undefined): string {
  return child(requirePayload(payload), Tag.UniqueIdentifier, 'TextString').value;
}

/** The Unique Identifiers of a Locate response payload, possibly none. */
export function readLocated(payload: TtlvItem | undefined): string[] {
  if (payload === undefined) return [];
  return children(payload, Tag.UniqueIdentifier).map((item) => {
    if (item.type !== 'TextString') throw new KmipProtocolError('a located Unique Identifier is not a text string');
    return item.value;
  });
}

/** The key material of a Secret Data object in a Get response payload (section 2.1.3 Key Block). */
export function readSecretDataMaterial(payload: TtlvItem | undefined): { uniqueIdentifier: string; material: Uint8Array } {
  const p = requirePayload(payload);
  if (child(p, Tag.ObjectType, 'Enumeration').value !== ObjectType.SecretData) throw new KmipProtocolError('the object is not Secret Data');
  const keyBlock = child(child(p, Tag.SecretData, 'Structure'), Tag.KeyBlock, 'Structure');
  const keyValue = child(keyBlock, Tag.KeyValue, 'Structure');
  return { uniqueIdentifier: child(p, Tag.UniqueIdentifier, 'TextString').value, material: child(keyValue, Tag.KeyMaterial, 'ByteString').value };
}

/** The attributes of a Get Attributes response payload, by name (multi-valued names repeat). */
export function readAttributes(payload: TtlvItem | undefined): KmipAttribute[] {
  return children(requirePayload(payload), Tag.Attribute).map((attribute) => ({
    name: child(attribute, Tag.AttributeName, 'TextString').value,
    value: childAnyType(attribute, Tag.AttributeValue),
  }));
}

// Readers of decoded items.

type ItemOf<T extends TtlvItem['type']> = Extract<TtlvItem, { type: T }>;

function requirePayload(payload: TtlvItem | undefined): TtlvItem {
  if (payload === undefined) throw new KmipProtocolError('a successful batch item has no Response Payload');
  return payload;
}

export function children(parent: TtlvItem, tag: number): TtlvItem[] {
  if (parent.type !== 'Structure') throw new KmipProtocolError(`tag 0x${parent.tag.toString(16)} is not a structure`);
  return parent.value.filter((item) => item.tag === tag);
}

function childAnyType(parent: TtlvItem, tag: number): TtlvItem {
  const found = children(parent, tag);
  if (found.length !== 1) throw new KmipProtocolError(`expected one item with tag 0x${tag.toString(16)}, found ${found.length}`);
  return found[0]!;
}

export function optionalChild<T extends TtlvItem['type']>(parent: TtlvItem, tag: number, type: T): ItemOf<T> | undefined {
  const found = children(parent, tag);
  if (found.length === 0) return undefined;
  if (found.length > 1) throw new KmipProtocolError(`more than one item with tag 0x${tag.toString(16)}`);
  const item = found[0]!;
  if (item.type !== type) throw new KmipProtocolError(`tag 0x${tag.toString(16)} is a ${item.type}, not a ${type}`);
  return item as ItemOf<T>;
}

export function child<T extends TtlvItem['type']>(parent: TtlvItem, tag: number, type: T): ItemOf<T> {
  const item = optionalChild(parent, tag, type);
  if (item === undefined) throw new KmipProtocolError(`missing item with tag 0x${tag.toString(16)}`);
  return item;
}
