/**
 * Replacing a file whole: the new text goes to a temporary file beside it, created under a random
 * name with O_EXCL (`wx`: never through a symbolic link or over a file someone put there first),
 * with the final file's mode, then renamed over the file. A reader sees the old text or the new,
 * never half of it; nothing else in the directory is touched.
 */
import { randomBytes } from 'node:crypto';
import { lstat, open, realpath, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { CliError } from './errors';

export async function replaceFile(path: string, text: string, mode: number): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(12).toString('hex')}.tmp`);
  let created = false;
  try {
    const fh = await open(tmp, 'wx', mode);
    created = true;
    try {
      await fh.writeFile(text);
      // The mode given to open() is narrowed by the umask; the file gets exactly the mode asked for.
      await fh.chmod(mode);
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    created = false;
  } catch (e) {
    throw new CliError(`cannot write ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  } finally {
    if (created) await rm(tmp, { force: true });
  }
}

/**
 * Where writing `path` should land: the file itself, or, when `path` is a symbolic link (a config
 * kept in a dotfiles repository), the file it points to, so the link stays a link. A link to
 * nothing is refused rather than guessed at, and so is a link someone else owns: in a shared
 * directory (`/tmp`) another user's link would aim the write at any file of ours (the wallet key,
 * `authorized_keys`), and the kernel's own guard (`fs.protected_symlinks`) never sees a link
 * resolved here. `uid`: whose links are followed (this process's; a parameter for tests).
 */
export async function writeTarget(path: string, uid: number | undefined = process.getuid?.()): Promise<string> {
  try {
    const st = await lstat(path);
    if (!st.isSymbolicLink()) return path;
    if (uid !== undefined && st.uid !== uid)
      throw new CliError(`${path} is a symbolic link owned by another user (uid ${st.uid}): not written through; remove it or write elsewhere`);
  } catch (e) {
    if (e instanceof CliError) throw e;
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return path;
    throw new CliError(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    return await realpath(path);
  } catch (e) {
    throw new CliError(
      `${path} is a symbolic link to a file that cannot be reached (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): remove the link or create its target`,
    );
  }
}
