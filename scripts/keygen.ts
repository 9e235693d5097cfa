/**
 * `npm run keygen -- <what> [--out FILE]` makes production key material:
 *   session   an ES256 private JWK for BROKER_SESSION_KEY_PATH (written mode 0600; prints its kid)
 *   secret    32 random bytes, hex, for BROKER_SECRET or BROKER_PAYLOAD_KEY (printed)
 */
import { randomBytes } from 'node:crypto';
import { writeKeyFile } from '../adapters/key-files';
import { generateSigningKeyJwk } from '../lib/signing-key';

async function main(argv: string[]): Promise<void> {
  const what = argv[0];
  const outIdx = argv.indexOf('--out');
  const out = outIdx >= 0 ? argv[outIdx + 1] : undefined;
  if (what === 'secret') {
    console.log(randomBytes(32).toString('hex'));
    return;
  }
  if (what === 'session') {
    if (!out) throw new Error('usage: npm run keygen -- session --out /path/to/session-key.jwk.json');
    const jwk = await generateSigningKeyJwk();
    await writeKeyFile(out, jwk, { exclusive: true });
    console.log(`wrote ES256 session key ${out} (kid ${jwk.kid}); set BROKER_SESSION_KEY_PATH=${out}`);
    return;
  }
  throw new Error('usage: npm run keygen -- session --out FILE | npm run keygen -- secret');
}

main(process.argv.slice(2)).catch((e: unknown) => {
  console.error((e as NodeJS.ErrnoException).code === 'EEXIST' ? 'refusing to overwrite an existing key file' : (e as Error).message);
  process.exit(1);
});
