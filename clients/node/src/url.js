/**
 * Broker URLs: `minibroker://[token@]host[:port][?namespace=NAME]`, and
 * `minibrokers://` for TLS (docs/protocol.md, "Transport"). The default port
 * is 7878; a bare `host:port` means `minibroker://host:port`.
 */

export const DEFAULT_PORT = 7878;

/** The query options a URL may carry. */
export const URL_OPTIONS = ["namespace"];

/**
 * `url` with its token replaced by `***`, for error messages and logs.
 * @param {string} url
 */
export function redactUrl(url) {
  return url.replace(/^((?:[A-Za-z][A-Za-z0-9+.-]*:\/\/)?)[^@/?#]*@/, "$1***@");
}

/**
 * @typedef {object} BrokerAddress
 * @property {string} host
 * @property {number} port
 * @property {boolean} tls
 * @property {string | undefined} token
 * @property {string | undefined} namespace
 */

/**
 * @param {string} url
 * @returns {BrokerAddress}
 */
export function parseUrl(url) {
  const text = url.includes("://") ? url : `minibroker://${url}`;
  const scheme = text.slice(0, text.indexOf("://"));
  if (scheme !== "minibroker" && scheme !== "minibrokers" && scheme !== "tcp") {
    throw new TypeError(
      `unsupported URL scheme '${scheme}' in '${redactUrl(url)}'; use minibroker:// (or minibrokers:// for TLS)`,
    );
  }
  // WHATWG URL parsing of a non-special scheme keeps every port (an http://
  // URL would drop :80 as the default) and splits user info and query.
  const parsed = new URL(`minibroker://${text.slice(scheme.length + 3)}`);
  // A misspelt `?namespce=` silently ignored would drop a test's isolation.
  const unknown = [...new Set(parsed.searchParams.keys())].filter((k) => !URL_OPTIONS.includes(k)).sort();
  if (unknown.length > 0) {
    throw new TypeError(
      `unknown URL option${unknown.length > 1 ? "s" : ""} ${unknown.map((k) => `'${k}'`).join(", ")} ` +
        `in '${redactUrl(url)}'; the known options are: ${URL_OPTIONS.join(", ")}`,
    );
  }
  const host = parsed.hostname.replace(/^\[(.*)\]$/, "$1") || "127.0.0.1";
  return {
    host,
    port: parsed.port ? Number(parsed.port) : DEFAULT_PORT,
    tls: scheme === "minibrokers",
    token: parsed.username ? decodeURIComponent(parsed.username) : undefined,
    namespace: parsed.searchParams.get("namespace") ?? undefined,
  };
}
