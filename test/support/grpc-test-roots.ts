import { TestPki } from '../../testbed/test-pki.js';

/**
 * A test CA that gRPC clients of this process trust. @grpc/grpc-js reads
 * GRPC_DEFAULT_SSL_ROOTS_FILE_PATH once, when it is loaded, as the roots of every TLS channel made
 * without explicit roots (the Google client library's): import this module before anything that
 * loads @grpc/grpc-js. A daemon started by a test gets the same variable in its environment.
 */
export const grpcTestPki = new TestPki('EKM Test gRPC CA');
process.env.GRPC_DEFAULT_SSL_ROOTS_FILE_PATH = grpcTestPki.caCertFile;
