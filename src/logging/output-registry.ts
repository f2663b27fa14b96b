import type winston from 'winston';
import type { LoggerConfig } from '../config/config.js';
import { createStdoutOutput } from './stdout-output.js';

type OutputFactory = (config: LoggerConfig) => winston.transport;

/** The config name of each log output (`logger.types`) and the factory of its winston transport. */
export const LOG_OUTPUTS: { readonly [T in LoggerConfig['types'][number]]: OutputFactory } = {
  StdoutLogger: createStdoutOutput,
  SplunkHttpLogger: () => {
    throw new Error('SplunkHttpLogger is not available in this build');
  },
  StackdriverLogger: () => {
    throw new Error('StackdriverLogger is not available in this build');
  },
} as const;
