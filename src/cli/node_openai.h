/* node_openai.h — the OpenAI-compatible API of `shardswarm node --api`: the backend
 * (struct sw_api_oai_backend, src/api) that runs generations through the node's pipeline
 * engine as the entry, with the model's tokenizer and chat template (from the node's own
 * shard, or — a light `--client` node — from a loaded node's shard header). */
#ifndef SW_CLI_NODE_OPENAI_H
#define SW_CLI_NODE_OPENAI_H

struct sw_api;
struct sw_node;
struct sw_pipe_node;

/* Registers /v1/models, /v1/completions and /v1/chat/completions on `api` (before
 * sw_api_start), on the node's loop thread. pipe_ref: where the host keeps its pipeline
 * engine; the host sets it to NULL once the engine is detached (read on the loop thread
 * only). Everything is released by sw_api_free (the loop runs once more afterwards to close
 * our handles). Returns 0 or a negative sw_err. */
int sw_cli_node_openai_attach(struct sw_api *api, struct sw_node *node, struct sw_pipe_node **pipe_ref);

#endif
