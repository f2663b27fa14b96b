import type winston from 'winston';
import type { LoggerConfig } from '../config/config.js';
import { ConfigError } from '../errors.js';
import type { LossReport } from './bounded-output.js';
import { createSplunkOutput, splunkWarnings, validateSplunkSettings } from './splunk-output.js';
import { createStackdriverOutput, readStackdriverCredentials, STACKDRIVER_PROPERTY, type StackdriverEndpoint } from './stackdriver-output.js';
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

/** An output whose settings were checked: the warnings they deserve, and its factory. */
export interface PreparedOutput {
  /** Settings that work but weaken security. */
  readonly warnings: readonly string[];
  readonly create: (context: OutputContext) => winston.transport;
}

interface OutputDef {
  /**
   * Checks the output's settings (reading what they name, such as a credentials file) and opens
   * nothing; throws a ConfigError naming the property if they cannot work.
   */
  readonly prepare: (config: LoggerConfig) => PreparedOutput;
}

/** The config name of each log output (`logger.types`), its start-up check and its winston transport. */
export const LOG_OUTPUTS: Readonly<Record<OutputType, OutputDef>> = {
  StdoutLogger: {
    prepare: (config) => ({ warnings: [], create: (context) => createStdoutOutput(config, { batched: context.batchStdout }) }),
  },
  SplunkHttpLogger: {
    prepare: (config) => {
      if (config.splunk === undefined) throw new ConfigError("Property 'logger.splunk.url' not found");
      const settings = config.splunk;
      const target = validateSplunkSettings(settings);
      return { warnings: splunkWarnings(settings, target), create: (context) => createSplunkOutput(settings, target, context.onLoss) };
    },
  },
  StackdriverLogger: {
    prepare: (config) => {
      if (config.stackdriver === undefined) throw new ConfigError(`Property '${STACKDRIVER_PROPERTY}' not found`);
      const credentials = readStackdriverCredentials(config.stackdriver.credentialsFile);
      return { warnings: [], create: (context) => createStackdriverOutput(credentials, context.onLoss, context.stackdriverEndpoint) };
    },
  },
} as const;
