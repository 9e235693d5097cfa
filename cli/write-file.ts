/**
 * Replacing a file whole: the new text goes to a temporary file beside it, created under a random
 * name with O_EXCL (`wx`: never through a symbolic link or over a file someone put there first),
 * with the final file's mode, then renamed over the file. A reader sees the old text or the new,
 * never half of it; nothing else in the directory is touched.
 */
import { randomBytes } from 'node:crypto';
import { lstat, open, readlink, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
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

/** Links followed before a chain is taken for a loop (Linux's own limit, MAXSYMLINKS). */
const MAX_LINK_HOPS = 40;

/**
 * Where writing `path` should land: the file itself, or, when `path` is a symbolic link (a config
 * kept in a dotfiles repository), the file its chain of links ends at, so the link stays a link. A
 * link to nothing is refused rather than guessed at, and so is a chain with a link someone else
 * owns (root's excepted): in a shared directory (`/tmp`) another user's link would aim the write at
 * any file of ours (the wallet key, `authorized_keys`), and the kernel's own guard
 * (`fs.protected_symlinks`) never sees links resolved here. Every link of the chain is checked,
 * not only the first. `uid`: whose links are followed (this process's; a parameter for tests).
 */
export async function writeTarget(path: string, uid: number | undefined = process.getuid?.()): Promise<string> {
  let current = path;
  for (let hops = 0; ; hops++) {
    let st;
    try {
      st = await lstat(current);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' && hops === 0) return path;
      if (code === 'ENOENT' || code === 'ENOTDIR')
        throw new CliError(`${path} is a symbolic link to a file that cannot be reached (${code}): remove the link or create its target`);
      throw new CliError(`cannot read ${current}: ${code ?? (e as Error).message}`);
    }
    if (!st.isSymbolicLink()) return current;
    if (uid !== undefined && st.uid !== uid && st.uid !== 0)
      throw new CliError(
        `${current === path ? path : `${path} leads through ${current}, which`} is a symbolic link owned by another user (uid ${st.uid}): not written through; remove it or write elsewhere`,
      );
    if (hops >= MAX_LINK_HOPS) throw new CliError(`${path} is a chain of more than ${MAX_LINK_HOPS} symbolic links: remove the loop`);
    current = resolve(dirname(current), await readlink(current));
  }
}
