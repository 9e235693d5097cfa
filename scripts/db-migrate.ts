/**
 * `npm run db:migrate [-- --runtime-role NAME] [--take-ownership] [--check]`: the migrations, the
 * audit shard count and the runtime login's grants, as the schema owner (BROKER_MIGRATION_DATABASE_URL,
 * else DATABASE_URL). The command itself is db/migrate-main.ts, so that the built tree has it too
 * (`node dist/db/migrate-main.js`, what the agentkeys-migrate systemd unit runs).
 */
import { runMigrateCommand } from '../db/migrate-main';

void runMigrateCommand(process.argv.slice(2), process.env, { log: (l) => console.log(l), warn: (l) => console.error(l) }).then((code) => {
  process.exitCode = code;
});
