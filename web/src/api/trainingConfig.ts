/**
 * The training parameters as the New Job form shows them, built from the training spec's JSON Schema
 * (`trainingConfig.schema.json`: what `GET /api/training/config-schema` serves, written by
 * scripts/build_dashboard.sh from `TrainingSpec` in services/common/training_spec.py). Names, labels, help,
 * defaults, ranges and choices all come from there: a parameter added to the spec appears in the form with no
 * edit here.
 */
import schema from './trainingConfig.schema.json';
import type { TrainingConfigInput } from './types';

export type ParamKind = 'int' | 'number' | 'select' | 'bool' | 'text' | 'list';

export interface ParamSpec {
  /** The API's name (snake_case). */
  key: keyof TrainingConfigInput & string;
  /** The other name the API accepts, the guide's (camelCase). */
  guide: string;
  label: string;
  kind: ParamKind;
  /** The default, as the form shows it ('' for none). */
  initial: string | boolean;
  help: string;
  options?: readonly string[];
  /** The range check: null when `v` is in range, else why not ("must be greater than 0"). */
  check?: (v: number) => string | null;
  /** No default: an empty field is left out of the request. */
  optional: boolean;
  /** 'guide': the guide's parameter table; 'advanced': beyond it. */
  group: 'guide' | 'advanced';
}

interface SchemaNode {
  type?: string;
  enum?: string[];
  anyOf?: SchemaNode[];
  items?: SchemaNode;
  default?: unknown;
  title?: string;
  description?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  'x-camelCase'?: string;
  'x-group'?: string;
}

/** A number as a person writes it: 0.0002 as 2e-4. */
export function formatNumber(n: number): string {
  return n !== 0 && Math.abs(n) < 1e-3 ? n.toExponential() : String(n);
}

/** The range of a schema node as a check, or undefined when it has none. */
export function rangeCheck(node: SchemaNode): ((v: number) => string | null) | undefined {
  const { minimum, maximum, exclusiveMinimum, exclusiveMaximum } = node;
  if (minimum === undefined && maximum === undefined && exclusiveMinimum === undefined && exclusiveMaximum === undefined) return undefined;
  let text: string;
  if (minimum !== undefined && maximum !== undefined) {
    text = `must be between ${formatNumber(minimum)} and ${formatNumber(maximum)}`;
  } else {
    const parts: string[] = [];
    if (exclusiveMinimum !== undefined) parts.push(`greater than ${formatNumber(exclusiveMinimum)}`);
    if (minimum !== undefined) parts.push(`at least ${formatNumber(minimum)}`);
    if (maximum !== undefined) parts.push(`at most ${formatNumber(maximum)}`);
    if (exclusiveMaximum !== undefined) parts.push(`below ${formatNumber(exclusiveMaximum)}`);
    text = `must be ${parts.join(' and ')}`;
  }
  return (v: number) =>
    (minimum !== undefined && v < minimum) ||
    (maximum !== undefined && v > maximum) ||
    (exclusiveMinimum !== undefined && v <= exclusiveMinimum) ||
    (exclusiveMaximum !== undefined && v >= exclusiveMaximum)
      ? text
      : null;
}

function kindOf(node: SchemaNode): ParamKind {
  if (node.enum) return 'select';
  switch (node.type) {
    case 'integer':
      return 'int';
    case 'number':
      return 'number';
    case 'boolean':
      return 'bool';
    case 'array':
      return 'list';
    default:
      return 'text';
  }
}

function initialOf(value: unknown): string | boolean {
  if (value === null || value === undefined) return '';
  if (typeof value === 'boolean') return value;
  if (typeof value === 'number') return formatNumber(value);
  if (Array.isArray(value)) return value.join(', ');
  return String(value);
}

/** One parameter of the schema as the form's field. */
export function paramOf(key: string, prop: SchemaNode): ParamSpec {
  // `int | None` is anyOf [{type: integer, ...}, {type: null}]: the non-null branch says what it is.
  const node: SchemaNode = { ...(prop.anyOf?.find((n) => n.type !== 'null') ?? {}), ...prop };
  return {
    key: key as ParamSpec['key'],
    guide: prop['x-camelCase'] ?? key,
    label: prop.title ?? key,
    kind: kindOf(node),
    initial: initialOf(prop.default),
    help: prop.description ?? '',
    options: node.enum,
    check: rangeCheck(node),
    optional: prop.default === null || prop.default === undefined,
    group: prop['x-group'] === 'advanced' ? 'advanced' : 'guide',
  };
}

const properties = (schema as unknown as { properties: Record<string, SchemaNode>; 'x-order': string[] }).properties;
const order = (schema as unknown as { 'x-order': string[] })['x-order'];

/** Every training parameter, in the spec's order. */
export const TRAINING_PARAMS: readonly ParamSpec[] = order.map((key) => paramOf(key, properties[key]));
