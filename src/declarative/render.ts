// A plan for people (`+ account openai/prod-1`, `~ key ci-bot: tenant - -> team-a, key: changed`) and for
// scripts (snake_case JSON, as the admin API). Secrets never appear: a changed key reads `key: changed`.
import type { Change, FieldChange, Plan } from './plan.js';

const OP_MARK = { create: '+', update: '~', delete: '-' } as const;

export function renderPlanText(plan: Plan): string {
  if (plan.changes.length === 0) return 'in sync: no changes\n';
  const lines = plan.changes.map((change) => {
    const head = `${OP_MARK[change.op]} ${change.entity} ${change.ref}`;
    if (change.op === 'delete') return head;
    const fields = change.fields.filter((f) => change.op === 'update' || f.secret || (f.to !== null && !isEmpty(f.to)));
    if (fields.length === 0) return head;
    return `${head}: ${fields.map((f) => fieldText(f, change.op)).join(', ')}`;
  });
  return `${lines.join('\n')}\n${summary(plan.changes)}\n`;
}

export function planJson(plan: Plan): { in_sync: boolean; changes: unknown[] } {
  return {
    in_sync: plan.changes.length === 0,
    changes: plan.changes.map((c) => ({
      entity: c.entity,
      op: c.op,
      ref: c.ref,
      fields: c.fields.map((f) => (f.secret ? { field: f.field, changed: true } : { field: f.field, from: f.from, to: f.to })),
    })),
  };
}

function summary(changes: readonly Change[]): string {
  const count = (op: Change['op']) => changes.filter((c) => c.op === op).length;
  return `${changes.length} change(s): ${count('create')} to create, ${count('update')} to update, ${count('delete')} to delete`;
}

function fieldText(field: FieldChange, op: Change['op']): string {
  if (field.secret) return `${field.field}: ${op === 'create' ? 'set' : 'changed'}`;
  return op === 'create' ? `${field.field} ${valueText(field.to)}` : `${field.field} ${valueText(field.from)} -> ${valueText(field.to)}`;
}

function valueText(value: unknown): string {
  if (value === null || value === undefined) return '-';
  if (typeof value === 'string') return /^[\w.:/@+-]+$/.test(value) ? value : JSON.stringify(value);
  return JSON.stringify(value);
}

function isEmpty(value: unknown): boolean {
  if (Array.isArray(value)) return value.length === 0;
  return typeof value === 'object' && value !== null && Object.keys(value).length === 0;
}
