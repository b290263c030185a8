/* How entries, messages and configurations look in a transcript. One line per object,
 * with only the fields that matter for its type (see raft.h, struct raft_message). */
#include "interact.h"

#include <ctype.h>

static void fmt_ids(struct interact_out *o, const raft_id *ids, unsigned n)
{
    interact_outf(o, "(");
    for (unsigned i = 0; i < n; i++) {
        interact_outf(o, "%s%llu", i > 0 ? "," : "", (unsigned long long)ids[i]);
    }
    interact_outf(o, ")");
}

void interact_fmt_conf(struct interact_out *o, const struct raft_conf *c)
{
    interact_outf(o, "voters=");
    fmt_ids(o, c->voters, c->n_voters);
    interact_outf(o, " learners=");
    fmt_ids(o, c->learners, c->n_learners);
}

/* Printable bytes as they are, anything else as \xNN, so a line never breaks. */
void interact_fmt_bytes(struct interact_out *o, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        if (isprint(p[i]) && p[i] != '\\' && p[i] != ' ' && p[i] != ']' && p[i] != '"') {
            interact_outf(o, "%c", p[i]);
        } else {
            interact_outf(o, "\\x%02x", p[i]);
        }
    }
}

static const char *cc_type_name(uint8_t type)
{
    switch (type) {
        case RAFT_CC_ADD_LEARNER:
            return "add-learner";
        case RAFT_CC_ADD_VOTER:
            return "add-voter";
        case RAFT_CC_REMOVE:
            return "remove";
    }
    return "?";
}

/* term/index TYPE data */
void interact_fmt_entry(struct interact_out *o, const struct raft_entry *e)
{
    struct raft_conf_change cc;
    interact_outf(o, "%llu/%llu ", (unsigned long long)e->term, (unsigned long long)e->index);
    switch (e->type) {
        case RAFT_ENTRY_NORMAL:
            interact_outf(o, "NORMAL ");
            interact_fmt_bytes(o, e->data.base, e->data.len);
            break;
        case RAFT_ENTRY_NOOP:
            interact_outf(o, "NOOP");
            break;
        case RAFT_ENTRY_CONF:
            if (raft_conf_change_decode(e->data.base, e->data.len, &cc) == 0) {
                interact_outf(o, "CONF %s %llu", cc_type_name(cc.type),
                              (unsigned long long)cc.node);
            } else {
                interact_outf(o, "CONF (undecodable) ");
                interact_fmt_bytes(o, e->data.base, e->data.len);
            }
            break;
        default:
            interact_outf(o, "TYPE%u ", e->type);
            interact_fmt_bytes(o, e->data.base, e->data.len);
            break;
    }
}

void interact_fmt_msg(struct interact_out *o, const struct raft_message *m)
{
    interact_outf(o, "%llu->%llu %s term=%llu", (unsigned long long)m->from,
                  (unsigned long long)m->to, raft_msg_type_name(m->type),
                  (unsigned long long)m->term);
    switch (m->type) {
        case RAFT_MSG_APPEND:
            interact_outf(o, " index=%llu logterm=%llu commit=%llu", (unsigned long long)m->index,
                          (unsigned long long)m->log_term, (unsigned long long)m->commit);
            if (m->n_entries > 0) {
                interact_outf(o, " entries=[");
                for (unsigned i = 0; i < m->n_entries; i++) {
                    interact_outf(o, "%s", i > 0 ? ", " : "");
                    interact_fmt_entry(o, &m->entries[i]);
                }
                interact_outf(o, "]");
            }
            break;
        case RAFT_MSG_APPEND_RESP:
            interact_outf(o, " index=%llu", (unsigned long long)m->index);
            if (m->reject) {
                interact_outf(o, " reject hint=%llu/%llu", (unsigned long long)m->hint_index,
                              (unsigned long long)m->hint_term);
            }
            break;
        case RAFT_MSG_VOTE:
        case RAFT_MSG_PREVOTE:
            interact_outf(o, " index=%llu logterm=%llu%s", (unsigned long long)m->index,
                          (unsigned long long)m->log_term, m->transfer ? " transfer" : "");
            break;
        case RAFT_MSG_VOTE_RESP:
        case RAFT_MSG_PREVOTE_RESP:
            interact_outf(o, "%s", m->reject ? " reject" : "");
            break;
        case RAFT_MSG_HEARTBEAT:
            interact_outf(o, " commit=%llu", (unsigned long long)m->commit);
            /* fallthrough */
        case RAFT_MSG_HEARTBEAT_RESP:
            if (m->read_seq != 0) {
                interact_outf(o, " readseq=%llu", (unsigned long long)m->read_seq);
            }
            break;
        case RAFT_MSG_SNAPSHOT:
            interact_outf(o, " snap=%llu/%llu offset=%llu len=%zu data=\"",
                          (unsigned long long)m->snap.index, (unsigned long long)m->snap.term,
                          (unsigned long long)m->offset, m->data.len);
            interact_fmt_bytes(o, m->data.base, m->data.len);
            interact_outf(o, "\"%s", m->done ? " done" : "");
            if (m->offset == 0) {
                interact_outf(o, " ");
                interact_fmt_conf(o, &m->snap.conf);
            }
            break;
        case RAFT_MSG_SNAPSHOT_RESP:
            interact_outf(o, " index=%llu offset=%llu%s%s", (unsigned long long)m->index,
                          (unsigned long long)m->offset, m->reject ? " reject" : "",
                          m->done ? " done" : "");
            break;
        default:
            break;
    }
}
