import { fireEvent, render, screen } from '@testing-library/react';
import { describe, expect, it, vi } from 'vitest';
import type { Preflight } from '../api/types';
import { PreflightPanel } from '../components/PreflightPanel';
import { makeJob } from './fakeGateway';

const result: Preflight = {
  training_config: makeJob().training_config,
  source: 'dataset_path sft/train.jsonl',
  records: 11,
  examples: 10,
  dropped: 1,
  truncated: 3,
  tokens_per_epoch: 1200,
  trained_tokens_per_epoch: 700,
  longest_example: 128,
  steps_per_epoch: 3,
  total_steps: 6,
  tokens_to_train: 2400,
  tokens_per_second: 800,
  throughput_source: 'timed 3 training steps in this preflight on cpu',
  estimated_seconds: 3,
  estimated_memory_bytes: 2 * 1024 ** 3,
  memory_breakdown: 'weights 1.00 GiB (none) + ...',
  measured_peak_memory_bytes: 1024 ** 3,
  device: 'cpu',
  example: [
    { text: '<|user|>Is clause 1 valid?<|assistant|>', trained: false, tokens: 12 },
    { text: 'It is void.<|end|>', trained: true, tokens: 6 },
  ],
  warnings: ['only 10 examples for batch_size 16'],
};

describe('PreflightPanel', () => {
  it('shows the figures, the warnings and the example with its trained tokens marked', () => {
    const onClose = vi.fn();
    render(<PreflightPanel result={result} onClose={onClose} />);
    expect(screen.getByTestId('preflight-truncated').textContent).toContain('3 of 10');
    expect(screen.getByTestId('preflight-steps').textContent).toBe('6 (3 per epoch)');
    expect(screen.getByTestId('preflight-time').textContent).toContain('800 tokens/s on cpu');
    expect(screen.getByTestId('preflight-warnings').textContent).toContain('batch_size 16');
    const example = screen.getByTestId('preflight-example');
    const marked = example.querySelectorAll('mark');
    expect(marked).toHaveLength(1);
    expect(marked[0].textContent).toBe('It is void.<|end|>');
    expect(example.textContent).toBe('<|user|>Is clause 1 valid?<|assistant|>It is void.<|end|>');
    fireEvent.click(screen.getByLabelText('Close preflight'));
    expect(onClose).toHaveBeenCalled();
  });
});
