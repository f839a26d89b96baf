/**
 * Compile-time proof that what `./types` declares beside the generated types agrees with the gateway's schema.
 *
 * The REST bodies in `./types` are aliases of the types generated from the gateway's OpenAPI schema
 * (`schema.gen.ts`), so they cannot drift. What is still written by hand is checked here: the lists of statuses,
 * quantizations and methods the dashboard iterates over must be exactly the values the schema allows (a status
 * the backend can send and the dashboard does not know, or the reverse, fails `tsc`). Nothing here runs:
 * `tsc --noEmit` (in `npm run build` and scripts/build_dashboard.sh) is the test.
 */
import type { components } from './schema.gen';
import type { JobStatus, Quantization, TrainingMethod } from './types';

type S = components['schemas'];

type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;

function expectTrue<T extends true>(): T | void {}

expectTrue<Equals<JobStatus, S['TrainingJobPublic']['status']>>();
expectTrue<Equals<JobStatus, S['TrainingJobMetricsPublic']['status']>>();
expectTrue<Equals<Quantization, NonNullable<S['TrainingConfigPublic']['quantization']>>>();
expectTrue<Equals<Quantization, NonNullable<S['TrainingConfigCreate']['quantization']>>>();
expectTrue<Equals<TrainingMethod, NonNullable<S['TrainingConfigPublic']['method']>>>();
expectTrue<Equals<TrainingMethod, NonNullable<S['TrainingConfigCreate']['method']>>>();
