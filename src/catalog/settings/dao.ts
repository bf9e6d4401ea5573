// Runtime settings (api_key_priority_config): their SQL.
import { DEFAULT_PRIORITY, DEFAULT_QUEUE_MAX_LENGTH, DEFAULT_QUEUE_MAX_WAIT_MS } from '../rules.js';
import type { PrioritySettings } from '../../core/types.js';
import type { SqlClient } from '../../stores/sql-client.js';
import { insertAudit } from '../audit/dao.js';
import { InvalidInputError } from '../../stores/errors.js';
import { checkReserve, validateSetting, type SettingName, type SettingValue } from './schema.js';

export class SettingDao {
  constructor(private readonly sql: SqlClient) {}

  async get(): Promise<PrioritySettings> {
    return readSettings(this.sql);
  }

  /**
   * Sets one setting (names and ranges: ./schema.ts; `enabled` without the `priority.` prefix works too); audited
   * as config_set. @throws InvalidInputError (unknown name or bad value)
   */
  async set(name: string, value: SettingValue, actor: string): Promise<PrioritySettings> {
    const checked = validateSetting(name, value);
    if (!checked.ok) throw new InvalidInputError(checked.errors[0]!.field, checked.errors[0]!.message);
    const setting = checked.value;
    const column = SETTING_COLUMNS[setting.name];
    return this.sql.transaction(async (tx) => {
      const before = await readSettings(tx);
      const json = JSON.stringify(setting.value);
      const updated = await tx.query(
        `UPDATE api_key_priority_config SET value = $1::text::jsonb, updated_by = $2 WHERE key = $3 AND deleted_at IS NULL RETURNING id`,
        [json, actor, column.key],
      );
      if (updated.length === 0) {
        await tx.query(`INSERT INTO api_key_priority_config (key, value, created_by, updated_by) VALUES ($1, $2::text::jsonb, $3, $3)`, [
          column.key,
          json,
          actor,
        ]);
      }
      const previous = before[column.field];
      await insertAudit(tx, [{ keyId: null, action: 'config_set', actor, metadata: { name: setting.name, value: setting.value, previous } }]);
      return readSettings(tx);
    });
  }
}

/** Where each setting lives: its row key in api_key_priority_config and its field in PrioritySettings. */
const SETTING_COLUMNS: Readonly<Record<SettingName, { readonly key: string; readonly field: keyof PrioritySettings }>> = {
  'priority.enabled': { key: 'enabled', field: 'enabled' },
  'priority.default_priority': { key: 'default_priority', field: 'defaultPriority' },
  'priority.reserve': { key: 'reserve', field: 'reserve' },
  'queue.max_wait_ms': { key: 'queue_max_wait_ms', field: 'queueMaxWaitMs' },
  'queue.max_length': { key: 'queue_max_length', field: 'queueMaxLength' },
  'tokens.default_output': { key: 'tokens_default_output', field: 'tokensDefaultOutput' },
};

/** The settings in force; a missing or mistyped row reads as its default. */
export async function readSettings(sql: SqlClient): Promise<PrioritySettings> {
  const rows = await sql.query<{ key: string; value: unknown }>(`SELECT key, value FROM api_key_priority_config WHERE deleted_at IS NULL`);
  const values = new Map(rows.map((row) => [row.key, row.value]));
  const enabled = values.get('enabled');
  const defaultPriority = values.get('default_priority');
  const queueMaxWaitMs = values.get('queue_max_wait_ms');
  const queueMaxLength = values.get('queue_max_length');
  const tokensDefaultOutput = values.get('tokens_default_output');
  const reserve = values.has('reserve') ? checkReserve(values.get('reserve')) : null;
  return {
    enabled: typeof enabled === 'boolean' ? enabled : false,
    defaultPriority: typeof defaultPriority === 'number' ? defaultPriority : DEFAULT_PRIORITY,
    queueMaxWaitMs: typeof queueMaxWaitMs === 'number' ? queueMaxWaitMs : DEFAULT_QUEUE_MAX_WAIT_MS,
    queueMaxLength: typeof queueMaxLength === 'number' ? queueMaxLength : DEFAULT_QUEUE_MAX_LENGTH,
    // Only a stored reserve is carried; absent means DEFAULT_PRIORITY_RESERVE wherever it is read.
    ...(reserve?.ok ? { reserve: reserve.value } : {}),
    // Absent means DEFAULT_OUTPUT_TOKENS wherever it is read.
    ...(typeof tokensDefaultOutput === 'number' ? { tokensDefaultOutput } : {}),
  };
}
