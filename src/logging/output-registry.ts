import type winston from 'winston';
import type { LoggerConfig } from '../config/config.js';
import { ConfigError } from '../errors.js';
import type { LossReport } from './bounded-output.js';
import { createSplunkOutput, splunkWarnings, validateSplunkSettings } from './splunk-output.js';
import { createStackdriverOutput, readStackdriverCredentials, type StackdriverEndpoint } from './stackdriver-output.js';
import { createStdoutOutput } from './stdout-output.js';

/** What every output factory is handed besides the logger settings. */
export interface OutputContext {
  /** Where a remote output reports entries it dropped or could not deliver (a line on stdout). */
  readonly onLoss: (report: LossReport) => void;
  /** Another Cloud Logging API endpoint than logging.googleapis.com:443. */
  readonly stackdriverEndpoint?: StackdriverEndpoint | undefined;
  /** StdoutLogger writes each event-loop turn's lines together. */
  readonly batchStdout?: boolean | undefined;
}

type OutputType = LoggerConfig['types'][number];

interface OutputDef {
  /**
   * Throws a ConfigError naming the property if the output's settings cannot work; opens nothing.
   * Returns warnings for settings that work but weaken security.
   */
  readonly validate: (config: LoggerConfig) => readonly string[];
  readonly create: (config: LoggerConfig, context: OutputContext) => winston.transport;
}

/** The config name of each log output (`logger.types`), its start-up check and its winston transport. */
export const LOG_OUTPUTS: { readonly [T in OutputType]: OutputDef } = {
  StdoutLogger: {
    validate: () => [],
    create: (config, context) => createStdoutOutput(config, { batched: context.batchStdout }),
  },
  SplunkHttpLogger: {
    validate: (config) => {
      if (config.splunk === undefined) throw new ConfigError("Property 'logger.splunk.url' not found");
      return splunkWarnings(config.splunk, validateSplunkSettings(config.splunk));
    },
    create: (config, context) => createSplunkOutput(config, context.onLoss),
  },
  StackdriverLogger: {
    validate: (config) => {
      if (config.stackdriver === undefined) throw new ConfigError("Property 'logger.stackdriver.credentials.file' not found");
      readStackdriverCredentials(config.stackdriver.credentialsFile);
      return [];
    },
    create: (config, context) => createStackdriverOutput(config, context.onLoss, context.stackdriverEndpoint),
  },
} as const;
