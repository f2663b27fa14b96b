import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

/**
 * Real filesystems for store failure tests, made and mounted by the test (as root): an ext4 image
 * on a loop device and a small tmpfs. Both unmount in remove(), which tests call from after() so
 * that a failing test leaves no mount behind.
 */

const run = (command: string, args: string[]) => execFileSync(command, args, { stdio: 'pipe' }).toString();

/** Why these tests cannot run here, or undefined when they can (root, mount, losetup, mkfs.ext4, a loop device). */
export function mountUnsupportedReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root to mount filesystems';
  for (const tool of ['mount', 'umount', 'losetup', 'mkfs.ext4', 'findmnt']) {
    try {
      run('sh', ['-c', `command -v ${tool}`]);
    } catch {
      return `${tool} is not installed`;
    }
  }
  return undefined;
}

/** An ext4 filesystem in an image file, loop-mounted with errors=remount-ro. */
export class LoopExt4 {
  private constructor(
    readonly dir: string,
    readonly mountPoint: string,
  ) {}

  static create(sizeMb = 64): LoopExt4 {
    const dir = mkdtempSync(join(tmpdir(), 'ekm-ext4-'));
    const image = join(dir, 'fs.img');
    const mountPoint = join(dir, 'mnt');
    mkdirSync(mountPoint);
    run('truncate', ['-s', `${sizeMb}M`, image]);
    run('mkfs.ext4', ['-q', '-F', image]);
    const fs = new LoopExt4(dir, mountPoint);
    run('mount', ['-o', 'loop,errors=remount-ro', image, mountPoint]);
    return fs;
  }

  /** A clean read-only remount; Linux refuses it (EBUSY) while any file there is open for writing. */
  remountReadOnly(): void {
    run('mount', ['-o', 'remount,ro', this.mountPoint]);
  }

  remountReadWrite(): void {
    run('mount', ['-o', 'remount,rw', this.mountPoint]);
  }

  /**
   * Turns the filesystem read-only under running writers, as the kernel does on a disk error
   * (ext4's errors=remount-ro, through its trigger_fs_error switch): the only way while files are
   * open for writing. It stays read-only until unmounted.
   */
  failIntoReadOnly(): void {
    const device = run('findmnt', ['-n', '-o', 'SOURCE', this.mountPoint]).trim();
    execFileSync('sh', ['-c', `echo ekm-test > /sys/fs/ext4/${basename(device)}/trigger_fs_error`]);
  }

  /** Unmounts and deletes the image. */
  remove(): void {
    unmountAndDelete(this.mountPoint, this.dir);
  }
}

/** A tmpfs of a few MB that a test can fill to the last byte and free again. */
export class SmallTmpfs {
  private readonly filler: string;

  private constructor(
    readonly dir: string,
    readonly mountPoint: string,
  ) {
    this.filler = join(mountPoint, 'filler');
  }

  static create(sizeMb = 16): SmallTmpfs {
    const dir = mkdtempSync(join(tmpdir(), 'ekm-tmpfs-'));
    const mountPoint = join(dir, 'mnt');
    mkdirSync(mountPoint);
    run('mount', ['-t', 'tmpfs', '-o', `size=${sizeMb}m,mode=0755`, 'ekm-test', mountPoint]);
    return new SmallTmpfs(dir, mountPoint);
  }

  /** Writes a file until the filesystem answers ENOSPC. */
  fill(): void {
    const fd = openSync(this.filler, 'w');
    const chunk = Buffer.alloc(64 * 1024, 0x5a);
    try {
      for (;;) writeSync(fd, chunk);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
    } finally {
      closeSync(fd);
    }
    // The last partial chunk may have left a few bytes: take them too.
    const rest = openSync(join(this.mountPoint, 'filler-rest'), 'w');
    try {
      for (;;) writeSync(rest, Buffer.alloc(1));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
    } finally {
      closeSync(rest);
    }
  }

  free(): void {
    rmSync(this.filler, { force: true });
    rmSync(join(this.mountPoint, 'filler-rest'), { force: true });
  }

  remove(): void {
    unmountAndDelete(this.mountPoint, this.dir);
  }
}

/** Unmounts (lazily when a process still holds a file there) and deletes what the test made. */
function unmountAndDelete(mountPoint: string, dir: string): void {
  try {
    run('umount', [mountPoint]);
  } catch {
    try {
      run('umount', ['-l', mountPoint]);
    } catch {
      // not mounted
    }
  }
  rmSync(dir, { recursive: true, force: true });
}
