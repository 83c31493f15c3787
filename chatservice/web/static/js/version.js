/**
 * @module version
 * The version this page sends in `hello`: the server refuses a page of
 * another major (below 1.0: minor) version with `outdated_client`. The page
 * ships with the server's package, so it is the package's version
 * (tests/test_web_static.py checks that they agree).
 */

/** The page's version, as `chatservice.__version__`. */
export const CLIENT_VERSION = '0.1.0';
