/* Building and packing KvReply messages, and the protobuf-c allocator the kv module
 * decodes with (over rfs_malloc, so tests can fail allocations). */
#include <stdarg.h>
#include <stdio.h>

#include "../common/alloc.h"
#include "internal.h"

static void *pb_alloc(void *data, size_t size)
{
    void *p = rfs_malloc(size);
    if (p == NULL) {
        *(int *)data = 1;
    }
    return p;
}

static void pb_free(void *data, void *p)
{
    (void)data;
    rfs_free(p);
}

void kv_pb_allocator_init(ProtobufCAllocator *a, int *failed)
{
    *failed = 0;
    *a = (ProtobufCAllocator){.alloc = pb_alloc, .free = pb_free, .allocator_data = failed};
}

Raftfs__KvRequest *kv_request_decode(const void *data, size_t len, int *nomem)
{
    ProtobufCAllocator a;
    Raftfs__KvRequest *req;

    kv_pb_allocator_init(&a, nomem);
    req = raftfs__kv_request__unpack(&a, len, data);
    if (req != NULL) {
        *nomem = 0;
    }
    return req;
}

void kv_request_free(Raftfs__KvRequest *req)
{
    ProtobufCAllocator a;
    int unused;

    kv_pb_allocator_init(&a, &unused);
    raftfs__kv_request__free_unpacked(req, &a);
}

void kv_result_init(struct kv_result *res)
{
    *res = (struct kv_result){0};
    raftfs__kv_reply__init(&res->r);
}

void kv_result_clear(struct kv_result *res)
{
    kv_value_clear(&res->value);
    rfs_free(res->items);
    rfs_free(res->item_ptrs);
    rfs_free(res->scan_buf);
    kv_result_init(res);
}

void kv_result_fail(struct kv_result *res, int status, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(res->error, sizeof res->error, fmt, ap);
    va_end(ap);
    res->r.status = (uint32_t)status;
    res->r.error = res->error;
}

int kv_reply_pack(const Raftfs__KvReply *r, struct rfs_buf *out)
{
    size_t len = raftfs__kv_reply__get_packed_size(r);
    /* At least one byte: base == NULL means "no reply", and an all-default reply packs
     * to nothing. */
    uint8_t *buf = rfs_malloc(len > 0 ? len : 1);

    if (buf == NULL) {
        return RFS_ENOMEM;
    }
    out->base = buf;
    out->len = raftfs__kv_reply__pack(r, buf);
    return 0;
}
