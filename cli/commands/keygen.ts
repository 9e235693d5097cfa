/** `agentkeys keygen`: a new wallet private key in a 0600 file, and its address. */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Command } from 'commander';
import { CliError } from '../errors';
import { CliContext } from '../context';
import { agentkeysDir } from '../session-store';

export function keygenCommand(): Command {
  return new Command('keygen')
    .description('create a new wallet key (secp256k1) in a file only you can read, and print its address')
    .argument('[file]', 'where to write it (default ~/.agentkeys/agent.key); an existing file is never overwritten')
    .action(async (file: string | undefined, _o: object, cmd: Command) => {
      const ctx = await CliContext.open(cmd);
      const path = file ?? join(agentkeysDir(), 'agent.key');
      const { generatePrivateKey, privateKeyToAccount } = await import('viem/accounts');
      const pk = generatePrivateKey();
      await mkdir(dirname(path), { recursive: true, mode: 0o700 });
      try {
        await writeFile(path, `${pk}\n`, { mode: 0o600, flag: 'wx' });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new CliError(`${path} exists; keygen never overwrites a key (name another file)`);
        throw new CliError(`cannot write ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
      const address = privateKeyToAccount(pk).address;
      ctx.print({ address, private_key_file: path }, [
        `New wallet ${address}`,
        `  key file  ${path} (mode 0600; back it up: whoever holds it is this wallet)`,
        `  log in    agentkeys init wallet --private-key-file ${path}`,
      ]);
    });
}
