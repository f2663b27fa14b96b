/**
 * The KMIP 1.0 tags and enumeration values this client uses (KMIP 1.0 spec, section 9.1.3). Only what
 * the EKM sends or reads: adding an operation means adding its tags here.
 */

/** Section 9.1.3.1: item tags. */
export const Tag = {
  ApplicationData: 0x420002,
  ApplicationNamespace: 0x420003,
  ApplicationSpecificInformation: 0x420004,
  Attribute: 0x420008,
  AttributeIndex: 0x420009,
  AttributeName: 0x42000a,
  AttributeValue: 0x42000b,
  BatchCount: 0x42000d,
  BatchErrorContinuationOption: 0x42000e,
  BatchItem: 0x42000f,
  KeyBlock: 0x420040,
  KeyFormatType: 0x420042,
  KeyMaterial: 0x420043,
  KeyValue: 0x420045,
  MaximumItems: 0x42004f,
  MaximumResponseSize: 0x420050,
  Name: 0x420053,
  NameType: 0x420054,
  NameValue: 0x420055,
  ObjectGroup: 0x420056,
  ObjectType: 0x420057,
  Operation: 0x42005c,
  ProtocolVersion: 0x420069,
  ProtocolVersionMajor: 0x42006a,
  ProtocolVersionMinor: 0x42006b,
  QueryFunction: 0x420074,
  RequestHeader: 0x420077,
  RequestMessage: 0x420078,
  RequestPayload: 0x420079,
  ResponseHeader: 0x42007a,
  ResponseMessage: 0x42007b,
  ResponsePayload: 0x42007c,
  ResultMessage: 0x42007d,
  ResultReason: 0x42007e,
  ResultStatus: 0x42007f,
  SecretData: 0x420085,
  SecretDataType: 0x420086,
  TemplateAttribute: 0x420091,
  TimeStamp: 0x420092,
  UniqueBatchItemId: 0x420093,
  UniqueIdentifier: 0x420094,
} as const;

/** Operation (section 6.2): values of section 9.1.3.2. */
export const Operation = {
  Register: 0x03,
  Locate: 0x08,
  Get: 0x0a,
  GetAttributes: 0x0b,
  Destroy: 0x14,
  Query: 0x18,
} as const;
export type OperationCode = (typeof Operation)[keyof typeof Operation];

/** Operations that change nothing on the server, so a request made only of them may be retried. */
export const READ_ONLY_OPERATIONS: ReadonlySet<number> = new Set([Operation.Locate, Operation.Get, Operation.GetAttributes, Operation.Query]);

/** Result Status (section 6.9): values of section 9.1.3.2. */
export const ResultStatus = { Success: 0x00, OperationFailed: 0x01, OperationPending: 0x02, OperationUndone: 0x03 } as const;

/** Result Reason (section 6.10): values of section 9.1.3.2. */
export const ResultReason = {
  ItemNotFound: 0x01,
  ResponseTooLarge: 0x02,
  AuthenticationNotSuccessful: 0x03,
  InvalidMessage: 0x04,
  OperationNotSupported: 0x05,
  MissingData: 0x06,
  InvalidField: 0x07,
  FeatureNotSupported: 0x08,
  OperationCanceledByRequester: 0x09,
  CryptographicFailure: 0x0a,
  IllegalOperation: 0x0b,
  PermissionDenied: 0x0c,
  ObjectArchived: 0x0d,
  IndexOutOfBounds: 0x0e,
  ApplicationNamespaceNotSupported: 0x0f,
  KeyFormatTypeNotSupported: 0x10,
  KeyCompressionTypeNotSupported: 0x11,
  GeneralFailure: 0x100,
} as const;

/** The name of a result reason for messages, e.g. `Item Not Found`. */
export function resultReasonName(reason: number | undefined): string {
  if (reason === undefined) return 'no reason given';
  const entry = Object.entries(ResultReason).find(([, v]) => v === reason);
  return entry ? entry[0].replace(/([a-z])([A-Z])/g, '$1 $2') : `reason 0x${reason.toString(16)}`;
}

/** Object Type: values of section 9.1.3.2. */
export const ObjectType = { SecretData: 0x07, OpaqueObject: 0x08 } as const;

/** Secret Data Type: values of section 9.1.3.2. */
export const SecretDataType = { Password: 0x01, Seed: 0x02 } as const;

/** Key Format Type: values of section 9.1.3.2. */
export const KeyFormatType = { Raw: 0x01, Opaque: 0x02 } as const;

/** Name Type: values of section 9.1.3.2. */
export const NameType = { UninterpretedTextString: 0x01, Uri: 0x02 } as const;

/** Batch Error Continuation Option (section 6.13): values of section 9.1.3.2. */
export const BatchErrorContinuationOption = { Continue: 0x01, Stop: 0x02, Undo: 0x03 } as const;

/** Query Function: values of section 9.1.3.2. */
export const QueryFunction = { QueryOperations: 0x01, QueryObjects: 0x02, QueryServerInformation: 0x03 } as const;
