import assert from 'node:assert/strict';
import type { Answer } from '../../testbed/http-client.js';

/**
 * An error answer: the status, and the body every client relies on (`code` equal to the status,
 * `message` and `details` strings); `input` names what was sent, for the failure message.
 */
export function assertErrorAnswer(answer: Answer, status: number, message?: RegExp, input?: string): void {
  const context = input === undefined ? answer.text : `${input}: ${answer.status} ${answer.text.slice(0, 300)}`;
  assert.equal(answer.status, status, context);
  assert.equal(answer.json?.code, status, context);
  assert.equal(typeof answer.json?.message, 'string', context);
  assert.equal(typeof answer.json?.details, 'string', context);
  if (message) assert.match(answer.json.message, message, context);
}
