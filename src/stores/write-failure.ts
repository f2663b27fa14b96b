import { accessSync, constants, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { StoreReadOnlyError } from '../errors.js';

/**
 * Why files in `folder` cannot be written, as the operating system tells it, or undefined when
 * nothing stops a write: a read-only filesystem (EROFS), a permission the service lacks (EACCES,
 * EPERM: also an immutable file), or a full disk (ENOSPC). `files` that do not exist yet are
 * skipped. It writes and removes one byte in `folder`: access(2) alone misses a filesystem the
 * kernel turned read-only after an error (ext4's emergency read-only state on Linux 6.x).
 */
export function folderWriteFailure(folder: string, files: readonly string[]): StoreReadOnlyError | undefined {
  for (const path of files) {
    try {
      accessSync(path, constants.W_OK);
    } catch (e) {
      const failure = errnoWriteFailure(e, path);
      if (failure !== undefined) return failure;
    }
  }
  const probe = join(folder, `.ekm-write-probe-${process.pid}`);
  try {
    writeFileSync(probe, 'x');
  } catch (e) {
    return errnoWriteFailure(e, folder);
  }
  try {
    rmSync(probe, { force: true });
  } catch (e) {
    return errnoWriteFailure(e, folder);
  }
  return undefined;
}

/** The write failure an errno of a file operation on `path` means, or undefined for any other error. */
export function errnoWriteFailure(e: unknown, path: string): StoreReadOnlyError | undefined {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'EROFS') return new StoreReadOnlyError('read-only-filesystem', `${path} is on a read-only filesystem (EROFS)`);
  if (code === 'EACCES' || code === 'EPERM') return new StoreReadOnlyError('permission', `The service may not write ${path} (${code})`);
  if (code === 'ENOSPC' || code === 'EDQUOT') return diskFull(path, code);
  return undefined;
}

/**
 * The write failure behind a failed SQLite write, or undefined when it was something else (a
 * damaged file, a lock held too long). SQLite reports a full disk itself (SQLITE_FULL); a
 * read-only or forbidden file shows as SQLITE_READONLY, SQLITE_CANTOPEN or an I/O error, so the
 * filesystem is asked for the cause.
 */
export function sqliteWriteFailure(e: unknown, folder: string, files: readonly string[]): StoreReadOnlyError | undefined {
  const code = (e as { code?: unknown } | undefined)?.code;
  if (typeof code !== 'string') return undefined;
  if (code === 'SQLITE_FULL') return diskFull(folder, code);
  if (code.startsWith('SQLITE_READONLY') || code.startsWith('SQLITE_IOERR') || code.startsWith('SQLITE_CANTOPEN')) {
    return folderWriteFailure(folder, files);
  }
  return undefined;
}

function diskFull(path: string, code: string): StoreReadOnlyError {
  return new StoreReadOnlyError('disk-full', `No space left on the filesystem of ${path} (${code})`);
}
