import { describe, expect, it } from 'vitest';
import { TRAINING_PARAMS, paramOf } from '../api/trainingConfig';
import { ADVANCED_PARAMS, GUIDE_PARAMS } from '../components/NewJobTab';

const byKey = Object.fromEntries(TRAINING_PARAMS.map((p) => [p.key, p]));

describe('the New Job form from the training spec', () => {
  it("shows the guide's table in its order, with its names and defaults", () => {
    expect(GUIDE_PARAMS.map((p) => [p.guide, p.initial])).toEqual([
      ['loraR', '8'],
      ['loraAlpha', '16'],
      ['loraDropout', '0.05'],
      ['numEpochs', '3'],
      ['batchSize', '4'],
      ['learningRate', '2e-4'],
      ['maxSeqLength', '2048'],
      ['quantization', '4bit'],
      ['gradientCheckpointing', true],
      ['datasetPath', ''],
    ]);
    expect(byKey.dataset_path.optional).toBe(true);
    expect(byKey.quantization.options).toEqual(['4bit', '8bit', 'none']);
    expect(byKey.gradient_checkpointing.kind).toBe('bool');
  });

  it('puts every other parameter under Advanced', () => {
    expect(ADVANCED_PARAMS.map((p) => p.key)).toEqual(
      expect.arrayContaining(['method', 'beta', 'min_confidence', 'min_confidence_diff', 'target_modules', 'max_steps', 'seed', 'checkpoint_every_steps']),
    );
    expect(GUIDE_PARAMS.length + ADVANCED_PARAMS.length).toBe(TRAINING_PARAMS.length);
    expect(byKey.target_modules).toMatchObject({ kind: 'list', initial: 'q_proj, v_proj' });
    expect(byKey.max_steps).toMatchObject({ kind: 'int', optional: true, initial: '' });
  });

  it('checks the ranges the spec declares', () => {
    expect(byKey.lora_r.check?.(0)).toBe('must be greater than 0 and at most 1024');
    expect(byKey.lora_r.check?.(8)).toBeNull();
    expect(byKey.lora_dropout.check?.(1)).toBe('must be at least 0 and below 1');
    expect(byKey.lora_dropout.check?.(0)).toBeNull();
    expect(byKey.min_confidence.check?.(1.5)).toBe('must be between 0 and 1');
    expect(byKey.max_steps.check?.(0)).toBe('must be greater than 0');
  });

  it('builds a field from any property the spec adds', () => {
    const p = paramOf('warmup_steps', {
      anyOf: [{ type: 'integer', minimum: 0 }, { type: 'null' }],
      default: null,
      title: 'Warm-up steps',
      description: 'Steps of linear warm-up',
      'x-camelCase': 'warmupSteps',
      'x-group': 'advanced',
    });
    expect(p).toMatchObject({ key: 'warmup_steps', guide: 'warmupSteps', label: 'Warm-up steps', kind: 'int', optional: true, group: 'advanced' });
    expect(p.check?.(-1)).toBe('must be at least 0');
  });
});
