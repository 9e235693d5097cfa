/**
 * `npm run keygen -- <what> [--out FILE]` makes production key material:
 *   session   an ES256 private JWK for BROKER_SESSION_KEY_PATH (written mode 0600; prints its kid)
 *   audit     the same for BROKER_AUDIT_KEY_PATH (signs the audit chain's heads)
 *   secret    32 random bytes, hex, for BROKER_SECRET or BROKER_PAYLOAD_KEY (printed)
 *   tee-thumbprint [VALUE]
 *             reads a BROKER_TEE_JWT_PUBLIC_KEY value (the argument, else $BROKER_TEE_JWT_PUBLIC_KEY,
 *             else standard input: paste the TEE's log line) exactly as the broker does, and prints
 *             the form it was read as, the key size and its RFC 7638 thumbprint (what /readyz shows)
 */
import { randomBytes } from 'node:crypto';
import { writeKeyFile } from '../adapters/key-files';
import { parseTeePublicKeyWithForm, teeKeyThumbprint } from '../adapters/tee-jwt';
import { generateSigningKeyJwk } from '../lib/signing-key';

/** Every kind, one line each: what `npm run keygen` with no argument prints. */
const USAGE = [
  'usage: npm run keygen -- <kind> [options]',
  '  npm run keygen -- session --out FILE         ES256 private JWK for BROKER_SESSION_KEY_PATH (mode 0600; prints its kid)',
  '  npm run keygen -- audit --out FILE           ES256 private JWK for BROKER_AUDIT_KEY_PATH (signs the audit chain heads)',
  '  npm run keygen -- secret                     32 random bytes, hex, for BROKER_SECRET or BROKER_PAYLOAD_KEY',
  '  npm run keygen -- tee-thumbprint [VALUE]     the RFC 7638 thumbprint of a BROKER_TEE_JWT_PUBLIC_KEY value',
  'The OIDC issuer keyset (BROKER_OIDC_KEY_PATH) is made and rotated by `BROKER_OIDC_KEY_PATH=FILE npm run oidc:rotate`.',
].join('\n');

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function main(argv: string[]): Promise<void> {
  const what = argv[0];
  const outIdx = argv.indexOf('--out');
  const out = outIdx >= 0 ? argv[outIdx + 1] : undefined;
  if (what === 'secret') {
    console.log(randomBytes(32).toString('hex'));
    return;
  }
  if (what === 'session' || what === 'audit') {
    if (!out) throw new Error(`usage: npm run keygen -- ${what} --out /path/to/${what}-key.jwk.json`);
    const jwk = await generateSigningKeyJwk();
    await writeKeyFile(out, jwk, { exclusive: true });
    console.log(`wrote ES256 ${what} key ${out} (kid ${jwk.kid}); set BROKER_${what.toUpperCase()}_KEY_PATH=${out}`);
    return;
  }
  if (what === 'tee-thumbprint') {
    const value = argv[1] ?? process.env.BROKER_TEE_JWT_PUBLIC_KEY ?? (await readStdin());
    if (!value.trim()) throw new Error('usage: npm run keygen -- tee-thumbprint [VALUE]  (or set BROKER_TEE_JWT_PUBLIC_KEY, or pipe the TEE log line in)');
    const { key, form } = parseTeePublicKeyWithForm(value);
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    console.log(`form        ${form}`);
    console.log(`key         RSA-${bits}`);
    console.log(`thumbprint  ${await teeKeyThumbprint(key)}`);
    return;
  }
  if (what === undefined || what === 'help' || what === '--help' || what === '-h') {
    console.log(USAGE);
    return;
  }
  throw new Error(`unknown kind ${JSON.stringify(what)}\n${USAGE}`);
}

main(process.argv.slice(2)).catch((e: unknown) => {
  console.error((e as NodeJS.ErrnoException).code === 'EEXIST' ? 'refusing to overwrite an existing key file' : (e as Error).message);
  process.exit(1);
});
