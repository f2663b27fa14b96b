import winston from 'winston';
import type { LoggerConfig } from '../config/config.js';

/**
 * StdoutLogger: one JSON object per line when stdout is not a terminal (journald, docker, files),
 * readable lines on a terminal.
 */
export function createStdoutOutput(_config: LoggerConfig): winston.transport {
  const readable = winston.format.printf((info) => {
    const { level, message, time, worker, requestId, ...fields } = info as Record<string, unknown>;
    const request = requestId === undefined ? '' : ` [${String(requestId)}]`;
    const rest = Object.keys(fields).length > 0 ? ` ${JSON.stringify(fields)}` : '';
    return `${String(time)} ${String(level).toUpperCase().padEnd(5)} [${String(worker)}]${request} ${String(message)}${rest}`;
  });
  return new winston.transports.Console({
    format: process.stdout.isTTY ? readable : winston.format.json(),
    // Every level goes to stdout; journald tells levels apart by the JSON field.
    stderrLevels: [],
  });
}
