// The user guide's "React Hook" example, verbatim between the markers below (tests/browser/test_guide_example.py
// checks that), so `tsc --noEmit` proves the guide's code compiles against the real hook. The guide leaves
// `JobCard` to the reader: the dashboard's own card is imported after the example (imports are hoisted).
// --- guide example: begin ---
import { useFineTuning } from '@/hooks/useFineTuning';

function TrainingDashboard() {
  const {
    jobs,
    stats,
    loading,
    error,
    createJob,
    startJob,
    cancelJob,
    exportSFT,
  } = useFineTuning({ autoLoad: true, pollInterval: 30000 });

  // Create and start a job
  const handleCreate = async () => {
    const job = await createJob({
      name: 'my_model_v1',
      vertical: 'general',
      base_model: 'meta-llama/Llama-2-7b',
      training_config: {
        lora_r: 8,
        lora_alpha: 16,
        lora_dropout: 0.05,
        num_epochs: 3,
        batch_size: 4,
        learning_rate: 2e-4,
        max_seq_length: 2048,
        quantization: '4bit',
        gradient_checkpointing: true,
      },
    });

    if (job) {
      await startJob(job.id);
    }
  };

  return (
    <div>
      <p>Running: {stats.running}</p>
      <p>Completed: {stats.completed}</p>
      {jobs.map(job => (
        <JobCard key={job.id} job={job} onCancel={() => cancelJob(job.id)} />
      ))}
    </div>
  );
}
// --- guide example: end ---

import { JobCard } from '@/components/JobCard';

export { TrainingDashboard };
