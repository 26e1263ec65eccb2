/* test_metrics.c — the Prometheus text that src/cli/node_web.c builds from a status JSON
 * document: label escaping, families only for figures the status has, the phase state set,
 * units (ms -> seconds), every sample after its family's # TYPE. The embedded dashboard table
 * is stubbed here (web_it.py serves the real one). */
#include "test.h"

#include "cli/node_web.h"
#include "util/util.h"

const struct sw_web_asset sw_web_assets[] = { { NULL, NULL, NULL, 0 } };

static char *metrics(const char *json, int *rc_out)
{
    struct sw_buf b = { 0 };
    *rc_out = sw_cli_metrics_text(json, &b);
    const char *s = sw_buf_cstr(&b);
    char *out = strdup(s ? s : "");
    sw_buf_free(&b);
    return out;
}

static int has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n') return 1;
    return 0;
}

#define CHECK_LINE(text, line) CHECK_MSG(has_line(text, line), "missing line \"%s\" in:\n%s", line, text)
#define CHECK_NO(text, s) CHECK_MSG(strstr(text, s) == NULL, "unexpected \"%s\" in:\n%s", s, text)

/* Every sample line's metric name has a "# TYPE name " line before it; the text ends in \n. */
static void check_typed(const char *text)
{
    CHECK(text[0] && text[strlen(text) - 1] == '\n');
    for (const char *p = text; *p;) {
        const char *e = strchr(p, '\n');
        if (!e) break;
        if (*p != '#') {
            size_t n = strcspn(p, "{ ");
            char want[256];
            snprintf(want, sizeof want, "# TYPE %.*s ", (int)n, p);
            const char *t = strstr(text, want);
            CHECK_MSG(t && t < p, "sample \"%.*s\" has no # TYPE before it", (int)(e - p), p);
        }
        p = e + 1;
    }
}

static const char *FULL =
    "{\"node_id\":\"3ef4\",\"info_hash\":\"7581\",\"model_ready\":true,\"listen_port\":1,\"dht_port\":1,"
    "\"owner_key\":\"\",\"n_shards\":3,\"ready\":false,\"discovered\":2,\"peers\":2,"
    "\"self\":{\"shard\":1,\"phase\":\"fetching\",\"auto\":false,\"seed_all\":false,\"tokens_per_s\":12.5,"
    "\"queue\":3,\"core_lease\":{\"budget\":2,\"dir\":\"/dev/shm/x\",\"waits\":12,\"wait_ms\":3.5}},"
    "\"reasons\":[\"shard 1: no node has it loaded\",\"shard 2: no node announced it\"],"
    "\"shards\":[{\"shard\":0,\"bytes\":100,\"loaded\":2,\"announced\":2,\"seeders\":0},"
    "{\"shard\":1,\"bytes\":200,\"loaded\":0,\"announced\":1,\"seeders\":1},"
    "{\"shard\":2,\"bytes\":300,\"loaded\":0,\"announced\":0,\"seeders\":0}],"
    "\"nodes\":[{\"id\":\"aaaaaaaaaaaaaaaaaaaa\",\"self\":true,\"live\":true,\"direct\":false,\"rtt_us\":0,"
    "\"threads\":4,\"bytes_done\":50,\"bytes_total\":200,\"rate_bps\":1000,\"eta_ms\":150000},"
    "{\"id\":\"bbbbbbbbbbbbbbbbbbbb\",\"self\":false,\"live\":true,\"direct\":true,\"rtt_us\":1500},"
    "{\"id\":\"cccccccccccccccccccc\",\"self\":false,\"live\":false,\"direct\":false,\"rtt_us\":900}],"
    "\"stats\":{\"records_accepted\":12,\"records_stale\":3,\"records_malformed\":1,"
    "\"records_unsigned_or_bad_sig\":0,\"records_wrong_model\":0,\"departures\":4},"
    "\"dht\":{\"nodes\":3,\"good_nodes\":1,\"packets_in\":41}}";

static void test_full(void)
{
    int rc;
    char *t = metrics(FULL, &rc);
    CHECK_EQ_INT(rc, 0);
    check_typed(t);
    CHECK_LINE(t, "# TYPE shardswarm_swarm_ready gauge");
    CHECK_LINE(t, "shardswarm_swarm_ready 0");
    CHECK_LINE(t, "shardswarm_model_resolved 1");
    CHECK_LINE(t, "shardswarm_swarm_not_ready_reasons 2");
    CHECK_LINE(t, "shardswarm_shards 3");
    CHECK_LINE(t, "shardswarm_shards_discovered 2");
    CHECK_LINE(t, "shardswarm_shards_loaded 1");
    CHECK_LINE(t, "shardswarm_shard_loaded_replicas{shard=\"0\"} 2");
    CHECK_LINE(t, "shardswarm_shard_loaded_replicas{shard=\"2\"} 0");
    CHECK_LINE(t, "shardswarm_shard_seeders{shard=\"1\"} 1");
    CHECK_LINE(t, "shardswarm_shard_size_bytes{shard=\"2\"} 300");
    CHECK_LINE(t, "shardswarm_peers 2");
    CHECK_LINE(t, "shardswarm_swarm_nodes{state=\"live\"} 2");
    CHECK_LINE(t, "shardswarm_swarm_nodes{state=\"departed\"} 1");
    CHECK_LINE(t, "shardswarm_swarm_nodes_direct 1");
    CHECK_LINE(t, "shardswarm_peer_rtt_seconds{node=\"bbbbbbbbbbbbbbbb\"} 0.0015");
    CHECK_NO(t, "node=\"cccc"); /* departed: no rtt sample */
    CHECK_LINE(t, "shardswarm_node_shard 1");
    CHECK_LINE(t, "shardswarm_node_phase{phase=\"fetching\"} 1");
    CHECK_LINE(t, "shardswarm_node_phase{phase=\"loaded\"} 0");
    CHECK_LINE(t, "shardswarm_node_phase{phase=\"none\"} 0");
    CHECK_LINE(t, "shardswarm_node_tokens_per_second 12.5");
    CHECK_LINE(t, "shardswarm_stage_sessions 3");
    CHECK_LINE(t, "shardswarm_core_lease_cores 2");
    CHECK_LINE(t, "# TYPE shardswarm_core_lease_waits_total counter");
    CHECK_LINE(t, "shardswarm_core_lease_waits_total 12");
    CHECK_LINE(t, "shardswarm_core_lease_wait_seconds_total 0.0035");
    CHECK_LINE(t, "shardswarm_node_threads 4");
    CHECK_LINE(t, "shardswarm_shard_download_done_bytes 50");
    CHECK_LINE(t, "shardswarm_shard_download_size_bytes 200");
    CHECK_LINE(t, "shardswarm_shard_download_rate_bytes_per_second 1000");
    CHECK_LINE(t, "shardswarm_shard_download_eta_seconds 150");
    CHECK_LINE(t, "# TYPE shardswarm_records_total counter");
    CHECK_LINE(t, "shardswarm_records_total{result=\"accepted\"} 12");
    CHECK_LINE(t, "shardswarm_records_total{result=\"malformed\"} 1");
    CHECK_LINE(t, "shardswarm_records_total{result=\"bad_signature\"} 0");
    CHECK_LINE(t, "shardswarm_node_departures_total 4");
    CHECK_LINE(t, "shardswarm_dht_nodes 3");
    CHECK_LINE(t, "shardswarm_dht_packets_received_total 41");
    CHECK_LINE(t, "# TYPE process_cpu_seconds_total counter");
    CHECK(strstr(t, "\nprocess_resident_memory_bytes ") != NULL);
    free(t);
}

/* Before the node's first snapshot: only what is known; no made-up zeros. */
static void test_starting(void)
{
    int rc;
    char *t = metrics("{\"ready\":false,\"reasons\":[\"starting\"]}", &rc);
    CHECK_EQ_INT(rc, 0);
    check_typed(t);
    CHECK_LINE(t, "shardswarm_swarm_ready 0");
    CHECK_LINE(t, "shardswarm_swarm_not_ready_reasons 1");
    CHECK_LINE(t, "shardswarm_build_info{version=\"" SW_VERSION "\"} 1");
    CHECK_NO(t, "shardswarm_shards ");
    CHECK_NO(t, "shardswarm_node_phase");
    CHECK_NO(t, "shardswarm_node_info");
    CHECK_NO(t, "shardswarm_records_total");
    CHECK_NO(t, "eta_seconds");
    free(t);
}

/* Exposition format: label values escape \\, \" and \n; HELP text is plain here. */
static void test_escaping(void)
{
    int rc;
    char *t = metrics("{\"node_id\":\"a\\\"b\\\\c\\nd\",\"info_hash\":\"<x>\"}", &rc);
    CHECK_EQ_INT(rc, 0);
    CHECK_LINE(t, "shardswarm_node_info{node_id=\"a\\\"b\\\\c\\nd\",info_hash=\"<x>\"} 1");
    free(t);
    t = metrics("not json", &rc);
    CHECK_EQ_INT(rc, SW_ECORRUPT);
    free(t);
    t = metrics("[1,2]", &rc);
    CHECK_EQ_INT(rc, SW_ECORRUPT);
    free(t);
}

/* Decode steps by sessions per step: one labelled sample per batch size the status lists;
 * malformed entries (no sessions, a string value) are left out, no family when none. */
static void test_decode_steps(void)
{
    int rc;
    char *t = metrics("{\"pipeline\":{\"compute_steps\":9,\"decode_steps\":["
                      "{\"sessions\":1,\"steps\":7,\"seconds\":0.25,\"cpu_seconds\":0.5,\"wall_seconds\":0.26},"
                      "{\"sessions\":4,\"steps\":2,\"seconds\":0.125,\"cpu_seconds\":0.2,\"wall_seconds\":0.13},"
                      "{\"steps\":3},{\"sessions\":2,\"steps\":\"x\"}]}}", &rc);
    CHECK_EQ_INT(rc, 0);
    check_typed(t);
    CHECK_LINE(t, "shardswarm_decode_steps_total{sessions=\"1\"} 7");
    CHECK_LINE(t, "shardswarm_decode_steps_total{sessions=\"4\"} 2");
    CHECK_LINE(t, "shardswarm_decode_step_seconds_total{sessions=\"4\"} 0.125");
    CHECK_LINE(t, "shardswarm_decode_step_cpu_seconds_total{sessions=\"1\"} 0.5");
    CHECK_NO(t, "sessions=\"2\"");
    CHECK_NO(t, "sessions=\"0\"");
    free(t);
    t = metrics("{\"pipeline\":{\"compute_steps\":0,\"decode_steps\":[]}}", &rc);
    CHECK_EQ_INT(rc, 0);
    CHECK_NO(t, "shardswarm_decode_steps_total");
    free(t);
}

int main(void)
{
    SW_RUN(test_decode_steps);
    SW_RUN(test_full);
    SW_RUN(test_starting);
    SW_RUN(test_escaping);
    return SW_TEST_DONE();
}
