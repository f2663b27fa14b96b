import { after, before } from 'node:test';
import { PykmipServer } from '../../testbed/pykmip-server.js';

/**
 * One real PyKMIP server for the enclosing describe(): started before its tests, removed after
 * them. Returns the accessor its tests call (the server exists once `before` has run).
 */
export function pykmipServerPerSuite(): () => PykmipServer {
  let kmip: PykmipServer | undefined;
  before(async () => {
    kmip = await PykmipServer.start();
  });
  after(async () => {
    await kmip?.remove();
  });
  return () => {
    if (kmip === undefined) throw new Error('The PyKMIP server starts in before(): call the accessor inside a test');
    return kmip;
  };
}
