/**
 * Compile-time proof that the hand-written types in ./types match the gateway's OpenAPI schema.
 *
 * `schema.gen.ts` is generated from the gateway's schema (`web/scripts/dump_openapi.py` + `npm run gen:api`, both
 * run by scripts/build_dashboard.sh). For every response the dashboard reads, the two types must have exactly the
 * same field names, and each scalar field the same type (enums included: a status the backend can send and the
 * dashboard does not know, or the reverse, fails `tsc`). Requests the client builds must be accepted by the
 * schema, and the training parameters must be the same set on both sides. Nothing here runs: `tsc --noEmit`
 * (in `npm run build`) is the test.
 */
import type { components } from './schema.gen';
import type {
  ArtifactFile,
  BaseModel,
  BaseModelList,
  CreateJobRequest,
  ExportedFile,
  Health,
  Job,
  JobArtifacts,
  JobCounts,
  JobList,
  JobMetrics,
  ModelEvaluation,
  TrainingConfig,
  TrainingConfigInput,
  TrainingStats,
  WrittenExport,
} from './types';

type S = components['schemas'];

type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;

/** Field names equal, and every non-object field's type equal (object fields are checked by their own line). */
type Matches<Mine, Gen> =
  Equals<keyof Mine, keyof Gen> extends true
    ? {
        [K in keyof Gen & keyof Mine]-?: Exclude<Gen[K], undefined> extends object | null
          ? NonNullable<Gen[K]> extends object
            ? true
            : Equals<Exclude<Gen[K], undefined>, Mine[K]>
          : Equals<Exclude<Gen[K], undefined>, Mine[K]>;
      }[keyof Gen & keyof Mine] extends true
      ? true
      : { fieldTypesDiffer: { [K in keyof Gen & keyof Mine]: [mine: Mine[K], schema: Exclude<Gen[K], undefined>] } }
    : { fieldNamesDiffer: { onlyInMine: Exclude<keyof Mine, keyof Gen>; onlyInSchema: Exclude<keyof Gen, keyof Mine> } };

function expectTrue<T extends true>(): T | void {}

expectTrue<Matches<Job, S['TrainingJobPublic']>>();
expectTrue<Matches<TrainingConfig, S['TrainingConfigPublic']>>();
expectTrue<Matches<JobList, S['TrainingJobsPublic']>>();
expectTrue<Matches<JobCounts, S['JobCountsPublic']>>();
expectTrue<Matches<JobMetrics, S['TrainingJobMetricsPublic']>>();
expectTrue<Matches<ModelEvaluation, S['ModelEvaluationPublic']>>();
expectTrue<Matches<JobArtifacts, S['TrainingJobArtifactsPublic']>>();
expectTrue<Matches<ArtifactFile, S['ArtifactFilePublic']>>();
expectTrue<Matches<BaseModel, S['BaseModelPublic']>>();
expectTrue<Matches<BaseModelList, S['BaseModelsPublic']>>();
expectTrue<Matches<TrainingStats, S['StatsPublic']>>();
expectTrue<Matches<ExportedFile, S['ExportFilePublic']>>();
expectTrue<Matches<WrittenExport, S['WrittenExportPublic']>>();
expectTrue<Matches<Health, S['HealthPublic']>>();

// Requests: what the client sends is what the gateway takes, and no training parameter is missing on either side.
expectTrue<CreateJobRequest extends S['TrainingJobCreate'] ? true : false>();
expectTrue<Equals<keyof CreateJobRequest, keyof S['TrainingJobCreate']>>();
expectTrue<TrainingConfigInput extends S['TrainingConfigCreate'] ? true : false>();
expectTrue<Equals<keyof TrainingConfigInput, keyof S['TrainingConfigCreate']>>();
