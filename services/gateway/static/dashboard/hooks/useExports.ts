/**
 * useExports: the training-data side of useFineTuning: the exports (records as JSON or JSONL, a file written
 * into the export directory), the exporter's statistics, and the base-model catalogue.
 */
import { useCallback, useState, type MutableRefObject } from 'react';
import type { ApiClient } from '../api/client';
import type { BaseModel, DPORecord, ExportFilters, ExportFormat, GauntletRecord, SFTRecord, TrainingStats, WrittenExport } from '../api/types';
import type { Call } from './useApiCall';

export interface ExportsState {
  models: BaseModel[];
  /** Training-data statistics from the exporter (`GET /api/training/stats`). */
  trainingStats: TrainingStats | null;
  exportSFT: (filters?: ExportFilters) => Promise<SFTRecord[] | null>;
  exportDPO: (filters?: ExportFilters) => Promise<DPORecord[] | null>;
  exportGauntlet: (filters?: ExportFilters) => Promise<GauntletRecord[] | null>;
  /** An export as JSONL text. */
  exportJsonl: (format: ExportFormat, filters?: ExportFilters) => Promise<string | null>;
  /** Writes an export into the exporter's export directory. */
  writeExport: (format: ExportFormat, filters?: ExportFilters) => Promise<WrittenExport | null>;
  loadTrainingStats: () => Promise<TrainingStats | null>;
  loadModels: () => Promise<BaseModel[] | null>;
}

export function useExports(client: ApiClient, call: Call, mounted: MutableRefObject<boolean>): ExportsState {
  const [models, setModels] = useState<BaseModel[]>([]);
  const [trainingStats, setTrainingStats] = useState<TrainingStats | null>(null);

  const loadModels = useCallback(async () => {
    const list = await call('listModels', () => client.listModels());
    if (list && mounted.current) setModels(list.models);
    return list ? list.models : null;
  }, [call, client, mounted]);

  const loadTrainingStats = useCallback(async () => {
    const s = await call('stats', () => client.stats());
    if (s && mounted.current) setTrainingStats(s);
    return s;
  }, [call, client, mounted]);

  const exportSFT = useCallback((f: ExportFilters = {}) => call('exportSFT', () => client.exportRecords('sft', f)), [call, client]);
  const exportDPO = useCallback((f: ExportFilters = {}) => call('exportDPO', () => client.exportRecords('dpo', f)), [call, client]);
  const exportGauntlet = useCallback((f: ExportFilters = {}) => call('exportGauntlet', () => client.exportRecords('gauntlet', f)), [call, client]);
  const exportJsonl = useCallback(
    (format: ExportFormat, f: ExportFilters = {}) => call(`export${format.toUpperCase()}`, () => client.exportJsonl(format, f)),
    [call, client],
  );
  const writeExport = useCallback(
    async (format: ExportFormat, f: ExportFilters = {}) => {
      const written = await call('writeExport', () => client.writeExport(format, f));
      if (written) void loadTrainingStats();
      return written;
    },
    [call, client, loadTrainingStats],
  );

  return { models, trainingStats, exportSFT, exportDPO, exportGauntlet, exportJsonl, writeExport, loadTrainingStats, loadModels };
}
