/*
 * config: every setting of the engram server, from the environment and the command line.
 *
 * One table (CONFIG_MAP) lists each setting once: its field, kind, environment variable,
 * command-line flag, default and help text. The Node design's variable names come first
 * (PORT, JWT_SECRET/JWT_SECRETE, GEMINI_API_KEY, PINECONE_*), then ENGRAM_*. A flag beats
 * the environment, which beats the default. `engram --help` prints the table.
 *
 * The config is loaded once at start on the main thread and read-only afterwards: it is
 * the only process-wide state (STYLE.md), reached through a pointer. config_free()
 * releases its strings.
 */
#ifndef ENGRAM_CONFIG_H
#define ENGRAM_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* X(field, kind, env, flag, default, help); kind is STR, INT or BOOL. Secrets are marked
   by a help text starting with "secret:" and are never printed. */
#define CONFIG_MAP(X)                                                                          \
  X(port, INT, "PORT", "port", "3000", "TCP port to listen on")                                \
  X(host, STR, "ENGRAM_HOST", "host", "0.0.0.0", "address to listen on")                       \
  X(public_url, STR, "ENGRAM_PUBLIC_URL", "public-url", "",                                    \
    "the server's own origin as browsers see it (default: from the Host header)")              \
  X(data_dir, STR, "ENGRAM_DATA_DIR", "data-dir", "data",                                      \
    "folder for the SQLite database and the generated JWT secret")                             \
  X(db, STR, "ENGRAM_DB", "db", "",                                                            \
    "SQLite file path or postgres:// URL (default: <data-dir>/engram.db)")                     \
  X(jwt_secret, STR, "JWT_SECRET", "jwt-secret", "",                                           \
    "secret: HS256 key for session tokens (JWT_SECRETE also read; default: random, kept "      \
    "in the data folder)")                                                                     \
  X(token_ttl_s, INT, "ENGRAM_TOKEN_TTL", "token-ttl", "604800",                               \
    "session token lifetime in seconds")                                                       \
  X(cookie_secure, BOOL, "ENGRAM_COOKIE_SECURE", "cookie-secure", "0",                         \
    "add Secure to the session cookie (set it behind TLS)")                                    \
  X(origins, STR, "ENGRAM_ORIGINS", "origins", "",                                             \
    "comma-separated extra origins allowed for CORS and Socket.IO handshakes")                 \
  X(llm, STR, "ENGRAM_LLM", "llm", "",                                                         \
    "language model provider: gemini, openai or offline (default: gemini when "                \
    "GEMINI_API_KEY is set, openai when OPENAI_BASE_URL is set, else offline)")                \
  X(llm_model, STR, "ENGRAM_LLM_MODEL", "llm-model", "",                                       \
    "model name (default: gemini-2.5-flash for gemini, gpt-4o-mini for openai)")               \
  X(gemini_api_key, STR, "GEMINI_API_KEY", "gemini-api-key", "", "secret: Gemini API key")     \
  X(gemini_base_url, STR, "ENGRAM_GEMINI_BASE_URL", "gemini-base-url",                         \
    "https://generativelanguage.googleapis.com", "Gemini API base URL (without /v1beta)")      \
  X(openai_base_url, STR, "OPENAI_BASE_URL", "openai-base-url", "",                            \
    "OpenAI-compatible base URL including /v1 (Ollama: http://localhost:11434/v1)")            \
  X(openai_api_key, STR, "OPENAI_API_KEY", "openai-api-key", "",                               \
    "secret: bearer key for the OpenAI-compatible server (optional)")                          \
  X(system_prompt, STR, "ENGRAM_SYSTEM_PROMPT", "system-prompt", "",                           \
    "system instruction for the model (default: a built-in one)")                              \
  X(embedder, STR, "ENGRAM_EMBEDDER", "embedder", "hash",                                      \
    "embedder: hash (built in), gemini or openai")                                             \
  X(embed_model, STR, "ENGRAM_EMBED_MODEL", "embed-model", "",                                 \
    "embedding model (default: gemini-embedding-001 / text-embedding-3-small)")                \
  X(vectors, STR, "ENGRAM_VECTORS", "vectors", "",                                             \
    "vector store: builtin or pinecone (default: pinecone when PINECONE_API_KEY and "          \
    "PINECONE_INDEX_HOST are set, else builtin)")                                              \
  X(pinecone_api_key, STR, "PINECONE_API_KEY", "pinecone-api-key", "",                         \
    "secret: Pinecone API key")                                                                \
  X(pinecone_index_host, STR, "PINECONE_INDEX_HOST", "pinecone-index-host", "",                \
    "Pinecone index host (https://INDEX-PROJECT.svc.ENV.pinecone.io)")                         \
  X(redis_url, STR, "ENGRAM_REDIS_URL", "redis-url", "",                                       \
    "redis:// URL: enables the multi-node Socket.IO adapter")                                  \
  X(recall_k, INT, "ENGRAM_RECALL_K", "recall-k", "3", "memories recalled per message")        \
  X(history, INT, "ENGRAM_HISTORY", "history", "20",                                           \
    "recent messages of the chat sent to the model")                                           \
  X(context_chars, INT, "ENGRAM_CONTEXT_CHARS", "context-chars", "24000",                      \
    "prompt budget in characters (oldest history trimmed first)")                              \
  X(memory_budget_mb, INT, "ENGRAM_MEMORY_BUDGET_MB", "memory-budget-mb", "512",               \
    "RAM for in-process vector indexes (least recently used users evicted)")                   \
  X(max_content, INT, "ENGRAM_MAX_CONTENT", "max-content", "65536",                            \
    "largest ai-message content in bytes (too_large above)")                                   \
  X(max_payload, INT, "ENGRAM_MAX_PAYLOAD", "max-payload", "1000000",                          \
    "Engine.IO maxPayload in bytes")                                                           \
  X(max_body, INT, "ENGRAM_MAX_BODY", "max-body", "1048576",                                   \
    "largest HTTP request body in bytes (413 above)")                                          \
  X(header_timeout_ms, INT, "ENGRAM_HEADER_TIMEOUT_MS", "header-timeout-ms", "10000",          \
    "drop clients that have not sent a whole request head in this time")                       \
  X(idle_timeout_ms, INT, "ENGRAM_IDLE_TIMEOUT_MS", "idle-timeout-ms", "75000",                \
    "close idle keep-alive HTTP connections after this time")                                  \
  X(ping_interval_ms, INT, "ENGRAM_PING_INTERVAL_MS", "ping-interval-ms", "25000",             \
    "Engine.IO pingInterval")                                                                  \
  X(ping_timeout_ms, INT, "ENGRAM_PING_TIMEOUT_MS", "ping-timeout-ms", "20000",                \
    "Engine.IO pingTimeout")                                                                   \
  X(rate_messages, INT, "ENGRAM_RATE_MESSAGES", "rate-messages", "30",                         \
    "ai-messages a user may send per minute (rate_limited above)")                             \
  X(max_conn_per_ip, INT, "ENGRAM_MAX_CONN_PER_IP", "max-conn-per-ip", "0",                    \
    "open connections allowed from one client address (0: no cap)")                            \
  X(shutdown_ms, INT, "ENGRAM_SHUTDOWN_MS", "shutdown-ms", "10000",                            \
    "on SIGTERM, time given to running answers before exit")                                   \
  X(access_log, BOOL, "ENGRAM_ACCESS_LOG", "access-log", "1",                                  \
    "log one info line per HTTP request (method, path, status, duration, request id)")

struct config {
#define CONFIG__FIELD_STR(f) char *f;
#define CONFIG__FIELD_INT(f) long long f;
#define CONFIG__FIELD_BOOL(f) bool f;
#define CONFIG__FIELD(f, kind, env, flag, def, help) CONFIG__FIELD_##kind(f)
  CONFIG_MAP(CONFIG__FIELD)
#undef CONFIG__FIELD
};

/* Fills c from the defaults, the environment and then argv[first..argc) flags of the form
   `--flag value` or `--flag=value` (a boolean flag alone means true). Unknown flags and bad values are reported on err and
   return EG_EINVAL; remaining non-flag arguments are returned through rest/nrest (pointers
   into argv). Also resolves the derived defaults (db path, llm and vectors choice). */
int config_load(struct config *c, int argc, char **argv, int first, char ***rest, int *nrest,
                FILE *err);
void config_free(struct config *c);
/* Prints every setting with its environment name, flag, default and help. */
void config_print_help(FILE *out);

#endif
