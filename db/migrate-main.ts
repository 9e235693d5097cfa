/**
 * `npm run db:migrate [-- options]`, built: `node dist/db/migrate-main.js [options]` (the
 * agentkeys-migrate systemd unit). As the schema owner — BROKER_MIGRATION_DATABASE_URL, else
 * DATABASE_URL — applies the pending migrations, sets the audit shard count (BROKER_AUDIT_SHARDS)
 * and, given the runtime login (--runtime-role NAME or BROKER_RUNTIME_ROLE), grants it what the API
 * and worker need and nothing more (db/roles.ts). The API and worker then run with
 * BROKER_MIGRATIONS=external and never hold the owner's credential (docs/deploy.md, "Migrations
 * under an owner role").
 *
 *   --take-ownership  first move to the owner what the runtime login owns (a deployment that
 *                     migrated under it); the owner must be a member of that role, or a superuser
 *   --check           change nothing: report pending migrations, a shard count that differs and,
 *                     with a runtime role, each way it could get around the audit triggers
 *
 * Exit 0 done (--check: nothing to do); 1 refused, failed, or (--check) something to do; 2 bad
 * arguments or configuration.
 */
import { AgentKeysError } from '../lib/errors';
import { ConfigError, envSchema } from '../lib/config';
import { databaseStartupLine } from '../lib/startup-error';
import { ensureAuditShards, readAuditSettings } from './audit';
import { migrate, pendingMigrations } from './migrate';
import { createPool, withTransaction, type Queryable } from './pool';
import { grantRuntimeRole, postureProblems, refuseUngrantable, rolePosture, takeOwnership } from './roles';

const USAGE = 'usage: db:migrate [--runtime-role NAME] [--take-ownership] [--check]';

interface Args {
  runtimeRole?: string;
  takeOwnership: boolean;
  check: boolean;
}

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { takeOwnership: false, check: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--runtime-role') {
      const next = argv[++i];
      if (next === undefined || next.startsWith('--')) throw new ConfigError(`--runtime-role needs a role name (${USAGE})`);
      args.runtimeRole = next;
    } else if (a === '--take-ownership') args.takeOwnership = true;
    else if (a === '--check') args.check = true;
    else throw new ConfigError(`unknown argument ${a} (${USAGE})`);
  }
  return args;
}

/** What the command reads of the environment: only its own settings, so the owner's unit needs none of the runtime's secrets. */
const commandEnv = envSchema.pick({ DATABASE_URL: true, BROKER_MIGRATION_DATABASE_URL: true, BROKER_AUDIT_SHARDS: true, BROKER_RUNTIME_ROLE: true });

export interface CommandOutput {
  log(line: string): void;
  warn(line: string): void;
}

/** Runs the command; returns its exit code. */
export async function runMigrateCommand(argv: readonly string[], env: NodeJS.ProcessEnv, out: CommandOutput): Promise<number> {
  let args: Args;
  let settings: ReturnType<typeof commandEnv.parse>;
  try {
    args = parseArgs(argv);
    // The flag wins over BROKER_RUNTIME_ROLE and is held to the same form.
    const parsed = commandEnv.safeParse({ ...env, ...(args.runtimeRole !== undefined ? { BROKER_RUNTIME_ROLE: args.runtimeRole } : {}) });
    if (!parsed.success) throw new ConfigError(`invalid configuration: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    settings = parsed.data;
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    out.warn(`agentkeys-broker db:migrate: ${e.message}`);
    return 2;
  }
  const variable = settings.BROKER_MIGRATION_DATABASE_URL ? 'BROKER_MIGRATION_DATABASE_URL' : 'DATABASE_URL';
  const url = settings.BROKER_MIGRATION_DATABASE_URL ?? settings.DATABASE_URL;
  if (!url) {
    out.warn('agentkeys-broker db:migrate: set BROKER_MIGRATION_DATABASE_URL (or DATABASE_URL) to the schema owner’s postgres:// URL');
    return 2;
  }
  const role = settings.BROKER_RUNTIME_ROLE;
  if (args.takeOwnership && !role) {
    out.warn(`agentkeys-broker db:migrate: --take-ownership takes from the runtime role: name it (--runtime-role or BROKER_RUNTIME_ROLE)`);
    return 2;
  }
  const pool = createPool(url, 1);
  try {
    const who = (await pool.query<{ user: string; database: string }>('SELECT current_user AS user, current_database() AS database')).rows[0];
    const as = `${who?.user ?? '?'} on ${who?.database ?? '?'}`;
    if (args.check) return await check(pool, settings.BROKER_AUDIT_SHARDS, role, as, out);
    if (args.takeOwnership && role) {
      const moved = await withTransaction(pool, (c) => takeOwnership(c, role));
      out.log(moved.length > 0 ? `took ownership from ${role}: ${moved.join(', ')}` : `${role} owned nothing here: nothing to take`);
    }
    // Before any migration: a role the grants could not fence is refused with its fix, not after
    // the migrations stumble on a schema it owns.
    if (role) await refuseUngrantable(pool, role);
    const applied = await migrate(pool);
    out.log(applied.length > 0 ? `applied ${applied.length} migrations as ${as}: ${applied.join(', ')}` : `no migration pending (${as})`);
    const shards = await ensureAuditShards(pool, settings.BROKER_AUDIT_SHARDS);
    out.log(`audit shards: ${settings.BROKER_AUDIT_SHARDS} (${shards})`);
    if (!role) {
      out.log('no runtime role named (--runtime-role or BROKER_RUNTIME_ROLE): granted nothing');
      return 0;
    }
    const granted = await withTransaction(pool, (c) => grantRuntimeRole(c, role));
    const tables = Object.entries(granted.tables);
    out.log(
      `granted ${role}: SELECT on ${tables.length} tables of schema ${granted.schema}; ` +
        tables
          .filter(([, w]) => w.length > 0)
          .map(([t, w]) => `${t} ${w.join('/')}`)
          .join(', ') +
        `; USAGE on ${granted.sequences.join(', ')}`,
    );
    // Left after the grants: what the role may still do through PUBLIC (CREATE on the schema or database).
    for (const problem of postureProblems(await rolePosture(pool, role))) out.warn(`agentkeys-broker db:migrate: warning: ${problem}`);
    return 0;
  } catch (e) {
    // Without a code the error is one of db/'s own refusals (a migration that failed, a role it will
    // not grant), already one line; with one it is the driver's or the server's, explained as the
    // API's start-up explains it, naming the variable the URL came from.
    const line =
      e instanceof AgentKeysError || (e instanceof Error && (e as { code?: unknown }).code === undefined)
        ? e.message
        : databaseStartupLine(e, url).replaceAll('DATABASE_URL', variable);
    out.warn(`agentkeys-broker db:migrate failed: ${line}`);
    return 1;
  } finally {
    await pool.end();
  }
}

/** --check: reads only. */
async function check(pool: Queryable, shards: number, role: string | undefined, as: string, out: CommandOutput): Promise<number> {
  let todo = 0;
  const pending = await pendingMigrations(pool);
  if (pending.length > 0) {
    todo++;
    out.log(`${pending.length} migrations pending (${as}): ${pending.join(', ')}`);
  } else {
    out.log(`schema up to date (${as})`);
    const current = (await readAuditSettings(pool)).shards;
    if (current !== shards) {
      todo++;
      out.log(`audit shards: ${current} in the database, BROKER_AUDIT_SHARDS is ${shards}`);
    }
  }
  if (role) {
    const problems = postureProblems(await rolePosture(pool, role));
    todo += problems.length;
    for (const p of problems) out.log(`runtime role: ${p}`);
    if (problems.length === 0) out.log(`runtime role ${role}: owns nothing here and is no superuser`);
  }
  return todo > 0 ? 1 : 0;
}

if (require.main === module) {
  void runMigrateCommand(process.argv.slice(2), process.env, { log: (l) => console.log(l), warn: (l) => console.error(l) }).then((code) => {
    process.exitCode = code;
  });
}
