/**
 * The two Postgres roles of a deployment that migrates apart from its runtime (BROKER_MIGRATIONS=
 * external, docs/deploy.md "Migrations under an owner role"): the schema owner, which
 * `npm run db:migrate` connects as and which owns every table and function, and the runtime login
 * of the API and worker (DATABASE_URL), granted here what db/*.ts does and nothing more.
 *
 * Why two: a trigger binds every role except whoever may alter its table (ALTER TABLE … DISABLE
 * TRIGGER, DROP TRIGGER and CREATE OR REPLACE of the trigger function need ownership), so the audit
 * tables' append-only triggers (migrations 004, 009, 010, 011) bind the runtime login only when it
 * owns none of them, is no member of their owner and is no superuser. Then a leaked DATABASE_URL
 * can append audit rows, never change, delete or truncate one.
 */
import pg from 'pg';
import type { Queryable } from './pool';

type Write = 'INSERT' | 'UPDATE' | 'DELETE';

/**
 * Every table of the schema, with the writes the runtime code makes to it (it reads them all).
 * Taken from the statements of db/*.ts. UPDATE also stands for `INSERT … ON CONFLICT DO UPDATE`
 * (approvals, users, agent_epochs) and `SELECT … FOR UPDATE` (grants, passkeys, refresh_tokens,
 * sessions), which Postgres allows only with UPDATE privilege. The audit appends serialise on
 * advisory locks (db/audit.ts), which need no privilege, and never lock a row: the audit tables get
 * INSERT alone, and audit_settings nothing, its shard count being the owner's to set
 * (db/audit.ts checkAuditShards). A table a migration adds must be listed: granting refuses a table
 * it does not know, and test/db-roles.test.ts holds the list to the migrated schema.
 */
export const RUNTIME_TABLE_WRITES: Readonly<Record<string, readonly Write[]>> = {
  users: ['INSERT', 'UPDATE'],
  wallets: ['INSERT'],
  grants: ['INSERT', 'UPDATE'],
  used_signatures: ['INSERT', 'DELETE'],
  sessions: ['INSERT', 'UPDATE', 'DELETE'],
  tee_logins: ['INSERT'],
  tee_wallet_requests: ['INSERT'],
  revoked_tee_tokens: ['INSERT', 'DELETE'],
  email_sends: ['INSERT', 'DELETE'],
  refresh_tokens: ['INSERT', 'UPDATE', 'DELETE'],
  refresh_family_revocations: ['INSERT', 'DELETE'],
  agent_epochs: ['INSERT', 'UPDATE'],
  kill_switch_entries: ['INSERT', 'DELETE'],
  approvals: ['INSERT', 'UPDATE', 'DELETE'],
  passkeys: ['INSERT', 'UPDATE', 'DELETE'],
  audit_log: ['INSERT'],
  audit_heads: ['INSERT'],
  audit_head_shards: ['INSERT'],
  audit_settings: [],
  // The migrator's record, read by the start-up check of BROKER_MIGRATIONS=external (db/migrate.ts).
  schema_migrations: [],
};

/** The append-only tables: the runtime login may read them and add rows, nothing else. */
export const AUDIT_TABLES: readonly string[] = ['audit_log', 'audit_heads', 'audit_head_shards', 'audit_settings'];

/** The sequences the runtime draws from: the audit log's global seq (db/audit.ts) and kill_switch_entries' bigserial. */
export const RUNTIME_SEQUENCES: readonly string[] = ['audit_log_global_seq', 'kill_switch_entries_entry_id_seq'];

/** What a role could do to the schema beyond the grants: each true field is a way around the audit triggers. */
export interface RolePosture {
  role: string;
  database: string;
  schema: string;
  superuser: boolean;
  /** Owns the database (or is a member of its owner): its settings for every session, and through pg_database_owner the public schema. */
  ownsDatabase: boolean;
  /** Owns the schema (directly or through membership): may drop it with every table in it. */
  ownsSchema: boolean;
  /** Tables, sequences and views of the schema it owns or may act as the owner of. */
  ownedRelations: string[];
  /** Functions of the schema (the trigger functions among them) it owns or may act as the owner of. */
  ownedFunctions: string[];
  /** May create objects in the schema: a function of its own can take the place of a built-in the broker's statements call. */
  createInSchema: boolean;
  /** May create schemas: one named after it comes first in its search_path ("$user") and shadows the broker's tables. */
  createSchemas: boolean;
}

/**
 * The posture of `role` (default: the login of `q`) in the current database and schema. Ownership
 * is read through membership (pg_has_role … MEMBER): a member of the owner can SET ROLE to it.
 */
export async function rolePosture(q: Queryable, role?: string): Promise<RolePosture> {
  const r = await q.query<RolePosture>(
    `WITH s AS (SELECT oid, nspname, nspowner FROM pg_namespace WHERE nspname = current_schema()),
          r AS (SELECT oid, rolname, rolsuper FROM pg_roles WHERE rolname = coalesce($1, current_user))
     SELECT r.rolname AS role, current_database() AS database, s.nspname AS schema, r.rolsuper AS superuser,
            pg_has_role(r.oid, (SELECT datdba FROM pg_database WHERE datname = current_database()), 'MEMBER') AS "ownsDatabase",
            pg_has_role(r.oid, s.nspowner, 'MEMBER') AS "ownsSchema",
            ARRAY(SELECT c.relname::text FROM pg_class c
                   WHERE c.relnamespace = s.oid AND c.relkind IN ('r', 'p', 'S', 'v', 'm', 'f') AND pg_has_role(r.oid, c.relowner, 'MEMBER')
                   ORDER BY 1) AS "ownedRelations",
            ARRAY(SELECT p.oid::regprocedure::text FROM pg_proc p
                   WHERE p.pronamespace = s.oid AND pg_has_role(r.oid, p.proowner, 'MEMBER') ORDER BY 1) AS "ownedFunctions",
            has_schema_privilege(r.oid, s.oid, 'CREATE') AS "createInSchema",
            has_database_privilege(r.oid, current_database(), 'CREATE') AS "createSchemas"
       FROM r, s`,
    [role ?? null],
  );
  const row = r.rows[0];
  if (!row) throw new Error(role ? `role ${role} does not exist` : 'the current schema does not exist');
  return row;
}

/** Each way `p` lets its role get around the audit log's triggers, as a sentence (none: the triggers bind it). */
export function postureProblems(p: RolePosture): string[] {
  // A superuser passes every check below: one line says it all.
  if (p.superuser) return [`${p.role} is a superuser: it can disable the audit tables' append-only triggers and rewrite or cut the log`];
  const problems: string[] = [];
  if (p.ownsDatabase) problems.push(`${p.role} owns database ${p.database}: it may change the settings of every session in it`);
  if (p.ownsSchema) problems.push(`${p.role} owns schema ${p.schema}: it may drop it with the audit tables in it`);
  const owned = [...p.ownedRelations, ...p.ownedFunctions];
  if (owned.length > 0) {
    const audit = p.ownedRelations.filter((t) => AUDIT_TABLES.includes(t));
    const shown = owned.length > 6 ? `${owned.slice(0, 6).join(', ')} and ${owned.length - 6} more` : owned.join(', ');
    problems.push(
      `${p.role} owns (or may act as the owner of) ${owned.length} objects of schema ${p.schema} (${shown})` +
        (audit.length > 0 ? `, the audit tables ${audit.join(', ')} among them: it can disable their append-only triggers and rewrite or cut the log` : ''),
    );
  }
  if (p.createInSchema && !p.ownsSchema)
    problems.push(`${p.role} may CREATE in schema ${p.schema}: a function it defines there can stand in for one the broker calls`);
  if (p.createSchemas && !p.ownsDatabase)
    problems.push(
      `${p.role} may create schemas in database ${p.database}: one named after it would come first in its search_path and shadow the broker's tables`,
    );
  return problems;
}

const ident = (name: string): string => pg.escapeIdentifier(name);

async function currentNames(q: Queryable): Promise<{ user: string; schema: string; database: string }> {
  const r = await q.query<{ user: string; schema: string | null; database: string }>(
    'SELECT current_user AS user, current_schema() AS schema, current_database() AS database',
  );
  const row = r.rows[0];
  if (!row?.schema) throw new Error('no current schema: the search_path names no existing schema');
  return { user: row.user, schema: row.schema, database: row.database };
}

/**
 * Moves to the current login what `role` owns of this database: the database itself and the
 * schema when it owns them, then its tables (their indexes and serial sequences move with them),
 * its other sequences and its functions. For a deployment that migrated under its runtime login:
 * afterwards that login can be granted (grantRuntimeRole). Needs a login that may act as `role`
 * (a member of it, or a superuser); taking the database also needs CREATEDB. Run it in a
 * transaction: all of it moves or nothing does. Returns what moved.
 */
export async function takeOwnership(q: Queryable, role: string): Promise<string[]> {
  const { user, schema, database } = await currentNames(q);
  if (role === user) throw new Error(`the runtime role ${role} is the login migrating: connect as the schema owner (BROKER_MIGRATION_DATABASE_URL)`);
  const moved: string[] = [];
  const db = await q.query<{ owned: boolean }>('SELECT pg_get_userbyid(datdba) = $1 AS owned FROM pg_database WHERE datname = current_database()', [role]);
  if (db.rows[0]?.owned) {
    try {
      await q.query(`ALTER DATABASE ${ident(database)} OWNER TO CURRENT_USER`);
    } catch (e) {
      throw new Error(
        `${role} owns database ${database} and ${user} cannot take it (${(e as Error).message}): ` +
          `run ALTER DATABASE ${ident(database)} OWNER TO ${ident(user)} as a superuser, then this again`,
        { cause: e },
      );
    }
    moved.push(`database ${database}`);
  }
  const ns = await q.query<{ owned: boolean }>('SELECT pg_get_userbyid(nspowner) = $1 AS owned FROM pg_namespace WHERE nspname = $2', [role, schema]);
  if (ns.rows[0]?.owned) {
    await q.query(`ALTER SCHEMA ${ident(schema)} OWNER TO CURRENT_USER`);
    moved.push(`schema ${schema}`);
  }
  const owned = (kinds: string[]) =>
    q.query<{ name: string }>(
      `SELECT c.relname::text AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relkind = ANY($2::"char"[]) AND pg_get_userbyid(c.relowner) = $3 ORDER BY 1`,
      [schema, kinds, role],
    );
  // Tables first: a serial's sequence moves with its table and refuses to move on its own.
  for (const { name } of (await owned(['r', 'p'])).rows) {
    await q.query(`ALTER TABLE ${ident(schema)}.${ident(name)} OWNER TO CURRENT_USER`);
    moved.push(`table ${name}`);
  }
  for (const { name } of (await owned(['S'])).rows) {
    await q.query(`ALTER SEQUENCE ${ident(schema)}.${ident(name)} OWNER TO CURRENT_USER`);
    moved.push(`sequence ${name}`);
  }
  const functions = await q.query<{ signature: string }>(
    `SELECT p.oid::regprocedure::text AS signature FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname = $1 AND pg_get_userbyid(p.proowner) = $2 ORDER BY 1`,
    [schema, role],
  );
  // regprocedure's text is the function's name and argument types, quoted as needed: an ALTER FUNCTION target as it is.
  for (const { signature } of functions.rows) {
    await q.query(`ALTER FUNCTION ${signature} OWNER TO CURRENT_USER`);
    moved.push(`function ${signature}`);
  }
  return moved;
}

/**
 * Throws unless `role` is a login grants can fence: it exists, it is not the login migrating, and
 * it can get around the triggers in no way grants cannot undo (a superuser, an owner of the
 * database, the schema or one of its objects, or a member of their owner). CREATE through PUBLIC
 * does not refuse it: postureProblems reports that as a warning. Checked again by
 * grantRuntimeRole; `npm run db:migrate` checks first, before migrating anything.
 */
export async function refuseUngrantable(q: Queryable, role: string): Promise<{ user: string; schema: string }> {
  const { user, schema } = await currentNames(q);
  if (role === user)
    throw new Error(`the runtime role ${role} is the login migrating: connect as the schema owner (BROKER_MIGRATION_DATABASE_URL), not as the runtime login`);
  const exists = await q.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role]);
  if (exists.rowCount === 0) throw new Error(`role ${role} does not exist: create the runtime login first (CREATE ROLE ${ident(role)} LOGIN PASSWORD '…')`);
  const blocking = postureProblems({ ...(await rolePosture(q, role)), createInSchema: false, createSchemas: false });
  if (blocking.length > 0) {
    throw new Error(
      `refusing to grant ${role}: ${blocking.join('; ')}. ` +
        `Move what it owns to ${user} with --take-ownership (as a member of ${role} or a superuser), and never make it a superuser or a member of ${user}`,
    );
  }
  return { user, schema };
}

export interface RuntimeGrants {
  schema: string;
  /** Tables granted, each with what beyond SELECT. */
  tables: Record<string, readonly Write[]>;
  sequences: readonly string[];
}

/**
 * Grants `role` exactly RUNTIME_TABLE_WRITES (SELECT on every table, the writes listed) and USAGE
 * on RUNTIME_SEQUENCES, after revoking whatever it held on the schema's tables and sequences and
 * its own CREATE on the schema, so a rerun also narrows a wider earlier grant. Explicit grants on
 * each table, not ALTER DEFAULT PRIVILEGES: a table a migration adds is granted only once it is
 * listed here. Refuses a role that could get around the triggers anyway (a superuser, an owner of
 * the database, the schema or any of its objects: takeOwnership first) and a table it does not
 * know. Run it in a transaction, as the owner of the tables.
 */
export async function grantRuntimeRole(q: Queryable, role: string): Promise<RuntimeGrants> {
  const { schema } = await refuseUngrantable(q, role);
  const tables = await q.query<{ name: string }>(
    `SELECT c.relname::text AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY 1`,
    [schema],
  );
  const present = tables.rows.map((t) => t.name);
  const unknown = present.filter((t) => !(t in RUNTIME_TABLE_WRITES));
  const missing = Object.keys(RUNTIME_TABLE_WRITES).filter((t) => !present.includes(t));
  if (unknown.length > 0 || missing.length > 0) {
    throw new Error(
      `db/roles.ts RUNTIME_TABLE_WRITES and schema ${schema} disagree` +
        (unknown.length > 0 ? `; tables it does not list: ${unknown.join(', ')}` : '') +
        (missing.length > 0 ? `; tables it lists that the schema lacks: ${missing.join(', ')}` : '') +
        ' (nothing was granted)',
    );
  }
  const r = ident(role);
  const s = ident(schema);
  await q.query(`GRANT USAGE ON SCHEMA ${s} TO ${r}`);
  await q.query(`REVOKE CREATE ON SCHEMA ${s} FROM ${r}`);
  await q.query(`REVOKE ALL ON ALL TABLES IN SCHEMA ${s} FROM ${r}`);
  await q.query(`REVOKE ALL ON ALL SEQUENCES IN SCHEMA ${s} FROM ${r}`);
  for (const [table, writes] of Object.entries(RUNTIME_TABLE_WRITES)) {
    await q.query(`GRANT ${['SELECT', ...writes].join(', ')} ON TABLE ${s}.${ident(table)} TO ${r}`);
  }
  for (const sequence of RUNTIME_SEQUENCES) await q.query(`GRANT USAGE ON SEQUENCE ${s}.${ident(sequence)} TO ${r}`);
  return { schema, tables: RUNTIME_TABLE_WRITES, sequences: RUNTIME_SEQUENCES };
}
