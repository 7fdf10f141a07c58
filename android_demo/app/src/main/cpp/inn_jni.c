/*
 * JNI glue between dev.innmobile.InnBundle (plain Java, no android.* imports) and the native core
 * (inn_mobile/csrc). The same file builds the Android library (app/src/main/cpp/CMakeLists.txt,
 * NDK) and the host library the JVM test loads (host/build_and_test.sh, gcc + JDK headers), so what
 * CI tests is what ships.
 *
 * Rules this file keeps:
 *  - Never crash on bad input: every core status becomes a dev.innmobile.InnException carrying the
 *    core's message (inn_status_str) and code; bad Java arguments become the usual Java exceptions.
 *    After a throw we return at once (no further JNI calls with an exception pending).
 *  - No hidden copies of weights: outputs are written straight into direct ByteBuffers.
 *  - No global state (like the core): the handle is a malloc'd struct owned by the Java object.
 *  - Alignment: the core reads float/double arrays in place, so the bundle bytes must be 8-byte
 *    aligned; memory that is not (a misaligned direct buffer, a Java byte[]) is copied once.
 */
#define _DEFAULT_SOURCE /* madvise, sysconf */
#include <jni.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "inn.h"

#define EXC_CLASS "dev/innmobile/InnException"

/* What InnBundle's `handle` points at. */
typedef struct {
    inn_bundle bundle;
    void *owned;     /* our copy of the bundle bytes, or NULL when the caller's memory is read in place */
    jobject mapping; /* global ref to the direct buffer read in place (e.g. a MappedByteBuffer), or NULL:
                      * the memory cannot be unmapped or freed while the handle lives, whatever Java drops */
    int file_mapped; /* read in place from a read-only file mapping: its pages may be dropped (drop_pages) */
    /* Guards bundle.nodes_pending, the one field written after the open (by inn_bundle_nodes_verified, 1 -> 0):
     * every call that reads node values reads the flag under it first, so it never races with that write. */
    pthread_mutex_t nodes_lock;
} jni_bundle;

static void throw_class(JNIEnv *env, const char *cls, const char *msg) {
    jclass c = (*env)->FindClass(env, cls);
    if (c) (*env)->ThrowNew(env, c, msg); /* else FindClass already left NoClassDefFoundError pending */
}

/* Throws InnException(status, "<what>: <core message> (INN_ERR_<NAME>)"): the same text as the
 * Python binding's NativeError, so host tests can compare the two. */
static void throw_status(JNIEnv *env, inn_status s, const char *what) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s: %s (INN_ERR_%s)", what, inn_status_str(s), inn_status_name(s));
    jclass c = (*env)->FindClass(env, EXC_CLASS);
    if (!c) return;
    jmethodID ctor = (*env)->GetMethodID(env, c, "<init>", "(ILjava/lang/String;)V");
    if (!ctor) return;
    jstring jmsg = (*env)->NewStringUTF(env, msg); /* msg is ASCII: core messages and our text */
    if (!jmsg) return;
    jobject exc = (*env)->NewObject(env, c, ctor, (jint)s, jmsg);
    if (exc) (*env)->Throw(env, (jthrowable)exc);
}

static jni_bundle *handle_of(JNIEnv *env, jlong handle) {
    if (handle == 0) {
        throw_class(env, "java/lang/IllegalStateException", "InnBundle is closed");
        return NULL;
    }
    return (jni_bundle *)(intptr_t)handle;
}

/* Drops the whole pages inside bytes [first, end) of `data`, a read-only file mapping (advice: a failure
 * changes nothing, and a dropped page reads back unchanged from the page cache). */
static void drop_pages(const uint8_t *data, size_t first, size_t end) {
    long page_size = sysconf(_SC_PAGESIZE);
    uintptr_t page = page_size > 0 ? (uintptr_t)page_size : 4096u;
    uintptr_t lo = ((uintptr_t)data + first + page - 1) & ~(page - 1);
    uintptr_t hi = ((uintptr_t)data + end) & ~(page - 1);
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/* inn_read_done for a mapped bundle being opened: each verified stretch leaves memory at once. */
static void open_done(void *data, size_t first, size_t end) { drop_pages((const uint8_t *)data, first, end); }

/* Opens `size` bytes at `data`; copies them first when `copy` is set. With `release` (a read-only file mapping
 * read in place), each stretch the core has verified is dropped from memory as it goes, and the nodes are left
 * to the first fill (inn_bundle_open_deferred: the fill reads them anyway, on its threads; nodes_ready checks
 * them first for anything else that reads them). Returns the handle or 0 with an exception pending. */
static jlong open_bytes(JNIEnv *env, const void *data, size_t size, int copy, int release) {
    jni_bundle *h = (jni_bundle *)calloc(1, sizeof *h);
    if (!h) {
        throw_class(env, "java/lang/OutOfMemoryError", "InnBundle handle");
        return 0;
    }
    if (copy) {
        h->owned = malloc(size ? size : 1); /* malloc is aligned for any scalar type */
        if (!h->owned) {
            free(h);
            throw_class(env, "java/lang/OutOfMemoryError", "copy of the bundle bytes");
            return 0;
        }
        if (size) memcpy(h->owned, data, size);
        data = h->owned;
    }
    h->file_mapped = release && !copy;
    inn_status s = h->file_mapped ? inn_bundle_open_deferred(&h->bundle, data, size, open_done, (void *)data)
                                  : inn_bundle_open_ex(&h->bundle, data, size, NULL, NULL);
    if (s == INN_OK && pthread_mutex_init(&h->nodes_lock, NULL) != 0) {
        free(h->owned);
        free(h);
        throw_class(env, "java/lang/OutOfMemoryError", "InnBundle lock");
        return 0;
    }
    if (s != INN_OK) {
        free(h->owned);
        free(h);
        throw_status(env, s, "opening bundle");
        return 0;
    }
    return (jlong)(intptr_t)h;
}

JNIEXPORT jlong JNICALL Java_dev_innmobile_InnBundle_nOpenDirect(JNIEnv *env, jclass cls, jobject buf,
                                                                 jboolean release) {
    (void)cls;
    void *addr = (*env)->GetDirectBufferAddress(env, buf);
    jlong cap = (*env)->GetDirectBufferCapacity(env, buf);
    if (!addr || cap < 0) {
        throw_class(env, "java/lang/IllegalArgumentException", "bundle buffer is not a direct ByteBuffer");
        return 0;
    }
    /* In place when aligned (a file mapped by InnBundle.open(File), mmap'd assets, allocateDirect): no copy,
     * and a global ref keeps `buf` (and so the mapping) alive until nClose. Else copied once. */
    int copy = ((uintptr_t)addr & 7u) != 0;
    jobject ref = copy ? NULL : (*env)->NewGlobalRef(env, buf);
    if (!copy && !ref) {
        throw_class(env, "java/lang/OutOfMemoryError", "global reference to the bundle buffer");
        return 0;
    }
    jlong h = open_bytes(env, addr, (size_t)cap, copy, release);
    if (h) ((jni_bundle *)(intptr_t)h)->mapping = ref;
    else if (ref) (*env)->DeleteGlobalRef(env, ref);
    return h;
}

JNIEXPORT jlong JNICALL Java_dev_innmobile_InnBundle_nOpenArray(JNIEnv *env, jclass cls, jbyteArray arr, jint off,
                                                                jint len) {
    (void)cls;
    jsize n = (*env)->GetArrayLength(env, arr);
    if (off < 0 || len < 0 || off > n || len > n - off) {
        throw_class(env, "java/lang/IndexOutOfBoundsException", "bundle array range");
        return 0;
    }
    /* Copied out of the Java heap: the core keeps pointers into the bytes, and arrays can move. */
    void *copy = malloc(len ? (size_t)len : 1);
    if (!copy) {
        throw_class(env, "java/lang/OutOfMemoryError", "copy of the bundle bytes");
        return 0;
    }
    (*env)->GetByteArrayRegion(env, arr, off, len, (jbyte *)copy);
    jlong h = open_bytes(env, copy, (size_t)len, 0, 0);
    if (h)
        ((jni_bundle *)(intptr_t)h)->owned = copy;
    else
        free(copy);
    return h;
}

JNIEXPORT void JNICALL Java_dev_innmobile_InnBundle_nClose(JNIEnv *env, jclass cls, jlong handle) {
    (void)cls;
    jni_bundle *h = (jni_bundle *)(intptr_t)handle;
    if (!h) return;
    if (h->mapping) (*env)->DeleteGlobalRef(env, h->mapping);
    pthread_mutex_destroy(&h->nodes_lock);
    free(h->owned);
    free(h);
}

/* Whether the bundle is read in place from the caller's memory (no copy of its bytes was made). */
JNIEXPORT jboolean JNICALL Java_dev_innmobile_InnBundle_nInPlace(JNIEnv *env, jclass cls, jlong handle) {
    (void)cls;
    jni_bundle *h = handle_of(env, handle);
    return h && !h->owned ? JNI_TRUE : JNI_FALSE;
}

/* Drops the process's resident pages of the bundle's memory (whole pages inside it). Only for memory that
 * is a read-only file mapping, which InnBundle checks before calling: those pages fault back in from the
 * file, unchanged, while anonymous memory would read back as zeros. */
JNIEXPORT void JNICALL Java_dev_innmobile_InnBundle_nReleasePages(JNIEnv *env, jclass cls, jlong handle) {
    (void)cls;
    jni_bundle *h = handle_of(env, handle);
    if (h && h->mapping) drop_pages(h->bundle.data, 0, h->bundle.size);
}

/* Whether the open left the nodes to the first fill and no fill or check has verified them yet. */
static int nodes_pending(jni_bundle *h) {
    pthread_mutex_lock(&h->nodes_lock);
    int pending = h->bundle.nodes_pending != 0;
    pthread_mutex_unlock(&h->nodes_lock);
    return pending;
}

/* Checks the nodes now, in one part, if the open left them to the fill (a no-op after): what every call that
 * reads node values outside a fill does first. 1 when they are good, else 0 with the core's status thrown. */
static int nodes_ready(JNIEnv *env, jni_bundle *h, const char *what) {
    pthread_mutex_lock(&h->nodes_lock);
    uint32_t state = 0;
    inn_status s = INN_OK;
    if (h->bundle.nodes_pending) {
        s = inn_bundle_check_nodes(&h->bundle, 0, 1, &state);
        if (s == INN_OK) s = inn_bundle_nodes_verified(&h->bundle, &state, 1);
        const uint8_t *nodes;
        size_t size;
        if (s == INN_OK && h->file_mapped && inn_bundle_section(&h->bundle, "NODE", &nodes, &size) == INN_OK)
            drop_pages(h->bundle.data, (size_t)(nodes - h->bundle.data), (size_t)(nodes - h->bundle.data) + size);
    }
    pthread_mutex_unlock(&h->nodes_lock);
    if (s != INN_OK) throw_status(env, s, what);
    return s == INN_OK;
}

JNIEXPORT jboolean JNICALL Java_dev_innmobile_InnBundle_nNodesPending(JNIEnv *env, jclass cls, jlong handle) {
    (void)cls;
    jni_bundle *h = handle_of(env, handle);
    return h && nodes_pending(h) ? JNI_TRUE : JNI_FALSE;
}

/* Joins the node checksum states the parts of a fill of graph (bucket, ...) returned (nGraphFill with `states`)
 * and compares them with the stored checksum: the fill's files are only good if this returns without throwing.
 * A no-op when another fill or check verified the nodes meanwhile. */
JNIEXPORT void JNICALL Java_dev_innmobile_InnBundle_nNodesVerified(JNIEnv *env, jclass cls, jlong handle,
                                                                   jint bucket, jintArray states) {
    (void)cls;
    jni_bundle *h = handle_of(env, handle);
    if (!h) return;
    jsize parts = (*env)->GetArrayLength(env, states);
    uint32_t *v = (uint32_t *)malloc(parts > 0 ? (size_t)parts * sizeof *v : 1);
    if (!v) {
        throw_class(env, "java/lang/OutOfMemoryError", "node checksum states");
        return;
    }
    (*env)->GetIntArrayRegion(env, states, 0, parts, (jint *)v);
    pthread_mutex_lock(&h->nodes_lock);
    inn_status s = !h->bundle.nodes_pending ? INN_OK
                   : parts < 1           ? INN_ERR_ARG
                                         : inn_bundle_nodes_verified(&h->bundle, v, (uint32_t)parts);
    pthread_mutex_unlock(&h->nodes_lock);
    free(v);
    if (s != INN_OK) {
        char what[64];
        snprintf(what, sizeof what, "filling graph of bucket %d", (int)bucket);
        throw_status(env, s, what);
    }
}

/* {bucket_count, layer_count, group_count} */
JNIEXPORT jintArray JNICALL Java_dev_innmobile_InnBundle_nCounts(JNIEnv *env, jclass cls, jlong handle) {
    (void)cls;
    jni_bundle *h = handle_of(env, handle);
    if (!h) return NULL;
    jint v[3] = {(jint)h->bundle.bucket_count, (jint)h->bundle.layer_count, (jint)h->bundle.group_count};
    jintArray out = (*env)->NewIntArray(env, 3);
    if (out) (*env)->SetIntArrayRegion(env, out, 0, 3, v);
    return out;
}

/* Fills `out` (9 longs: kind, blocks, taps, has_bias, n_out, n_in, m_out, m_in, weight_count) and
 * returns the layer name as UTF-8 bytes (decoded in Java: NewStringUTF wants modified UTF-8). */
JNIEXPORT jbyteArray JNICALL Java_dev_innmobile_InnBundle_nLayerInfo(JNIEnv *env, jclass cls, jlong handle,
                                                                     jint bucket, jint layer, jlongArray out) {
    (void)cls;
    jni_bundle *h = handle_of(env, handle);
    if (!h) return NULL;
    if (bucket < 0 || layer < 0) {
        throw_status(env, INN_ERR_RANGE, "layer info");
        return NULL;
    }
    inn_layer_info li;
    inn_status s = inn_layer_info_get(&h->bundle, (uint32_t)bucket, (uint32_t)layer, &li);
    if (s != INN_OK) {
        char what[96];
        snprintf(what, sizeof what, "layer %d of bucket %d", (int)layer, (int)bucket);
        throw_status(env, s, what);
        return NULL;
    }
    if ((*env)->GetArrayLength(env, out) < 9) {
        throw_class(env, "java/lang/IllegalArgumentException", "layer info array needs 9 elements");
        return NULL;
    }
    jlong v[9] = {li.kind, li.blocks, li.taps, li.has_bias, li.n_out, li.n_in, li.m_out, li.m_in,
                  (jlong)li.weight_count};
    (*env)->SetLongArrayRegion(env, out, 0, 9, v);
    jsize len = li.name ? (jsize)li.name_len : 0;
    jbyteArray name = (*env)->NewByteArray(env, len);
    if (name && len) (*env)->SetByteArrayRegion(env, name, 0, len, (const jbyte *)li.name);
    return name;
}

/* The payload of section `tag` (4 ASCII characters), or null when the bundle has no such section. */
JNIEXPORT jbyteArray JNICALL Java_dev_innmobile_InnBundle_nSection(JNIEnv *env, jclass cls, jlong handle,
                                                                   jbyteArray tag) {
    (void)cls;
    jni_bundle *h = handle_of(env, handle);
    if (!h) return NULL;
    if ((*env)->GetArrayLength(env, tag) != 4) {
        throw_class(env, "java/lang/IllegalArgumentException", "a section tag has 4 bytes");
        return NULL;
    }
    char t[4];
    (*env)->GetByteArrayRegion(env, tag, 0, 4, (jbyte *)t);
    const uint8_t *data = NULL;
    size_t size = 0;
    if (memcmp(t, "NODE", 4) == 0 && !nodes_ready(env, h, "reading a section")) return NULL;
    inn_status s = inn_bundle_section(&h->bundle, t, &data, &size);
    if (s == INN_ERR_MISSING) return NULL;
    if (s != INN_OK) {
        throw_status(env, s, "reading a section");
        return NULL;
    }
    if (size > (size_t)INT32_MAX) {
        throw_status(env, INN_ERR_OVERFLOW, "section larger than a Java array");
        return NULL;
    }
    jbyteArray out = (*env)->NewByteArray(env, (jsize)size);
    if (out && size) (*env)->SetByteArrayRegion(env, out, 0, (jsize)size, (const jbyte *)data);
    return out;
}

JNIEXPORT jlong JNICALL Java_dev_innmobile_InnBundle_nScratchSize(JNIEnv *env, jclass cls, jlong handle,
                                                                  jint bucket) {
    (void)cls;
    jni_bundle *h = handle_of(env, handle);
    if (!h) return 0;
    size_t bytes = 0;
    inn_status s = bucket < 0 ? INN_ERR_RANGE : inn_bundle_scratch_size(&h->bundle, (uint32_t)bucket, &bytes);
    if (s != INN_OK) {
        throw_status(env, s, "scratch size");
        return 0;
    }
    return (jlong)bytes;
}

/* A direct buffer's memory, NULL with *bytes = 0 for a null buffer. Throws (returns 0) when the
 * buffer is not direct or not aligned to `align` bytes (the core writes floats/doubles in place). */
static int direct(JNIEnv *env, jobject buf, size_t align, const char *what, void **ptr, size_t *bytes) {
    *ptr = NULL;
    *bytes = 0;
    if (!buf) return 1;
    void *p = (*env)->GetDirectBufferAddress(env, buf);
    jlong cap = (*env)->GetDirectBufferCapacity(env, buf);
    char msg[128];
    if (!p || cap < 0) {
        snprintf(msg, sizeof msg, "%s must be a direct ByteBuffer", what);
        throw_class(env, "java/lang/IllegalArgumentException", msg);
        return 0;
    }
    if ((uintptr_t)p % align) {
        snprintf(msg, sizeof msg, "%s must be %u-byte aligned", what, (unsigned)align);
        throw_class(env, "java/lang/IllegalArgumentException", msg);
        return 0;
    }
    *ptr = p;
    *bytes = (size_t)cap;
    return 1;
}

JNIEXPORT void JNICALL Java_dev_innmobile_InnBundle_nMaterialize(JNIEnv *env, jclass cls, jlong handle,
                                                                 jint bucket, jint layer, jint layout, jint dtype,
                                                                 jobject weight, jobject scales, jobject bias,
                                                                 jobject scratch) {
    (void)cls;
    jni_bundle *h = handle_of(env, handle);
    if (!h) return;
    void *w, *sc, *bi, *scr;
    size_t wn, scn, bin, scrn;
    if (!direct(env, weight, 4, "weight buffer", &w, &wn) || !direct(env, scales, 4, "scales buffer", &sc, &scn) ||
        !direct(env, bias, 4, "bias buffer", &bi, &bin) || !direct(env, scratch, 8, "scratch buffer", &scr, &scrn))
        return;
    char what[96];
    snprintf(what, sizeof what, "materialising layer %d of bucket %d", (int)layer, (int)bucket);
    if (bucket < 0 || layer < 0 || layout < 0 || dtype < 0) {
        throw_status(env, INN_ERR_RANGE, what);
        return;
    }
    if (!nodes_ready(env, h, what)) return;
    inn_status s = inn_materialize(&h->bundle, (uint32_t)bucket, (uint32_t)layer, (inn_layout)layout,
                                   (inn_dtype)dtype, w, wn, (float *)sc, scn, (float *)bi, bin, scr, scrn);
    if (s != INN_OK) throw_status(env, s, what);
}

/* ------------------------------------------------------------------ runtime graphs (inn_graph_*) */

/* Finds graph (bucket, runtime); runtime comes as ASCII bytes, and is left NUL-terminated in `rt`. 0 on success,
 * else an exception is pending. */
static int find_graph_named(JNIEnv *env, jni_bundle *h, jint bucket, jbyteArray runtime, inn_graph *g,
                            char rt[INN_RUNTIME_NAME + 1]) {
    jsize n = (*env)->GetArrayLength(env, runtime);
    if (n < 1 || n > INN_RUNTIME_NAME) {
        throw_class(env, "java/lang/IllegalArgumentException", "runtime names have 1 to 16 characters");
        return -1;
    }
    (*env)->GetByteArrayRegion(env, runtime, 0, n, (jbyte *)rt);
    rt[n] = '\0';
    inn_status s = bucket < 0 ? INN_ERR_MISSING : inn_graph_find(&h->bundle, (uint32_t)bucket, rt, g);
    if (s != INN_OK) {
        char what[96];
        snprintf(what, sizeof what, "graph '%s' of bucket %d", rt, (int)bucket);
        throw_status(env, s, what);
        return -1;
    }
    return 0;
}

static int find_graph(JNIEnv *env, jni_bundle *h, jint bucket, jbyteArray runtime, inn_graph *g) {
    char rt[INN_RUNTIME_NAME + 1];
    return find_graph_named(env, h, bucket, runtime, g, rt);
}

/* A table's row count from the core (`count_fn`), clamped to jint; 0 with a pending InnException on error. */
static jint table_count(JNIEnv *env, jlong handle, inn_status (*count_fn)(const inn_bundle *, uint32_t *),
                        const char *what) {
    jni_bundle *h = handle_of(env, handle);
    uint32_t count = 0;
    if (!h) return 0;
    inn_status s = count_fn(&h->bundle, &count);
    if (s != INN_OK) throw_status(env, s, what);
    return count > (uint32_t)INT32_MAX ? INT32_MAX : (jint)count;
}

JNIEXPORT jint JNICALL Java_dev_innmobile_InnBundle_nGraphCount(JNIEnv *env, jclass cls, jlong handle) {
    (void)cls;
    return table_count(env, handle, inn_graph_count, "listing graphs");
}

/* Graph `index` of the bundle (below nGraphCount): returns its runtime name and writes its bucket to
 * bucket_out[0]. */
JNIEXPORT jbyteArray JNICALL Java_dev_innmobile_InnBundle_nGraphList(JNIEnv *env, jclass cls, jlong handle,
                                                                     jint index, jintArray bucket_out) {
    (void)cls;
    jni_bundle *h = handle_of(env, handle);
    if (!h) return NULL;
    uint32_t bucket = 0;
    char rt[INN_RUNTIME_NAME + 1];
    inn_status s = index < 0 ? INN_ERR_MISSING : inn_graph_list(&h->bundle, (uint32_t)index, &bucket, rt);
    if (s != INN_OK) {
        throw_status(env, s, "listing graphs");
        return NULL;
    }
    if ((*env)->GetArrayLength(env, bucket_out) < 1) {
        throw_class(env, "java/lang/IllegalArgumentException", "bucket_out needs 1 element");
        return NULL;
    }
    jint b = (jint)bucket;
    (*env)->SetIntArrayRegion(env, bucket_out, 0, 1, &b);
    jsize len = (jsize)strlen(rt);
    jbyteArray out = (*env)->NewByteArray(env, len);
    if (out) (*env)->SetByteArrayRegion(env, out, 0, len, (const jbyte *)rt);
    return out;
}

/* Images of graph (bucket, runtime): their count, then per image its UTF-8 name (returned) and its
 * file size (size_out[0]). */
JNIEXPORT jint JNICALL Java_dev_innmobile_InnBundle_nGraphImageCount(JNIEnv *env, jclass cls, jlong handle,
                                                                     jint bucket, jbyteArray runtime) {
    (void)cls;
    jni_bundle *h = handle_of(env, handle);
    inn_graph g;
    if (!h || find_graph(env, h, bucket, runtime, &g)) return 0;
    return g.image_count > (uint32_t)INT32_MAX ? INT32_MAX : (jint)g.image_count;
}

JNIEXPORT jbyteArray JNICALL Java_dev_innmobile_InnBundle_nGraphImage(JNIEnv *env, jclass cls, jlong handle,
                                                                      jint bucket, jbyteArray runtime, jint index,
                                                                      jlongArray size_out) {
    (void)cls;
    jni_bundle *h = handle_of(env, handle);
    inn_graph g;
    if (!h || find_graph(env, h, bucket, runtime, &g)) return NULL;
    inn_image_info info;
    inn_status s = index < 0 ? INN_ERR_MISSING : inn_graph_image(&g, (uint32_t)index, &info);
    if (s != INN_OK) {
        throw_status(env, s, "graph image");
        return NULL;
    }
    if ((*env)->GetArrayLength(env, size_out) < 1) {
        throw_class(env, "java/lang/IllegalArgumentException", "size_out needs 1 element");
        return NULL;
    }
    jlong size = (jlong)info.size;
    (*env)->SetLongArrayRegion(env, size_out, 0, 1, &size);
    jsize len = (jsize)info.name_len;
    jbyteArray out = (*env)->NewByteArray(env, len);
    if (out && len) (*env)->SetByteArrayRegion(env, out, 0, len, (const jbyte *)info.name);
    return out;
}

JNIEXPORT jlong JNICALL Java_dev_innmobile_InnBundle_nGraphScratchSize(JNIEnv *env, jclass cls, jlong handle,
                                                                       jint bucket, jbyteArray runtime) {
    (void)cls;
    jni_bundle *h = handle_of(env, handle);
    inn_graph g;
    if (!h || find_graph(env, h, bucket, runtime, &g)) return 0;
    size_t bytes = 0;
    inn_status s = inn_graph_scratch_size(&h->bundle, &g, &bytes);
    if (s != INN_OK) {
        throw_status(env, s, "graph scratch size");
        return 0;
    }
    return (jlong)bytes;
}

/* The addresses and capacities of the direct buffers of `bufs` (each aligned to `align`), in new tables the caller
 * frees (also on failure, when they may be NULL). 0 with an exception pending when a buffer is null or not
 * direct, or memory runs out. */
static int image_table(JNIEnv *env, jobjectArray bufs, size_t align, void ***ptrs, size_t **sizes) {
    jsize n = (*env)->GetArrayLength(env, bufs);
    *ptrs = (void **)calloc(n ? (size_t)n : 1, sizeof **ptrs);
    *sizes = (size_t *)calloc(n ? (size_t)n : 1, sizeof **sizes);
    if (!*ptrs || !*sizes) {
        throw_class(env, "java/lang/OutOfMemoryError", "graph buffer table");
        return 0;
    }
    int ok = 1;
    for (jsize i = 0; i < n && ok; i++) {
        jobject buf = (*env)->GetObjectArrayElement(env, bufs, i);
        ok = buf != NULL && direct(env, buf, align, "image buffer", &(*ptrs)[i], &(*sizes)[i]);
        if (!buf && !(*env)->ExceptionCheck(env)) throw_class(env, "java/lang/NullPointerException", "image buffer");
        if (buf) (*env)->DeleteLocalRef(env, buf);
    }
    return ok;
}

/* Rebuilds the images of graph (bucket, runtime) into `outs` (one direct, 4-byte aligned buffer per image, in
 * image order): part -1 copies the stored bytes of every image (inn_graph_fill_spans; scratch unused), part p
 * in [0, parts) writes its share of the holes (inn_graph_fill_part; InnBundle.fillGraph runs the parts on its
 * threads, each with its own scratch) and, with `release` (InnBundle passes it for a read-only file mapping
 * only: anonymous memory would read back as zeros), then drops the pages of the part's nodes. With `states`
 * (non-null while nNodesPending), part p also checks its share of the nodes first (inn_graph_fill_part_verify)
 * and leaves its checksum state in states[p], for nNodesVerified to join once every part has run. The core
 * validates everything before writing. */
JNIEXPORT void JNICALL Java_dev_innmobile_InnBundle_nGraphFill(JNIEnv *env, jclass cls, jlong handle, jint bucket,
                                                               jbyteArray runtime, jobjectArray outs,
                                                               jobject scratch, jint part, jint parts,
                                                               jboolean release, jintArray states) {
    (void)cls;
    jni_bundle *h = handle_of(env, handle);
    inn_graph g;
    if (!h || find_graph(env, h, bucket, runtime, &g)) return;
    jsize n = (*env)->GetArrayLength(env, outs);
    if ((uint32_t)n != g.image_count) {
        char msg[96];
        snprintf(msg, sizeof msg, "graph has %u images, got %d buffers", (unsigned)g.image_count, (int)n);
        throw_class(env, "java/lang/IllegalArgumentException", msg);
        return;
    }
    void *scr = NULL;
    size_t scrn = 0;
    if (part >= 0) {
        if (!direct(env, scratch, 8, "scratch buffer", &scr, &scrn)) return;
        if (!scr) {
            throw_class(env, "java/lang/NullPointerException", "scratch");
            return;
        }
    }
    void **ptrs;
    size_t *sizes;
    int ok = image_table(env, outs, 4, &ptrs, &sizes);
    if (ok && states && (part < 0 || (*env)->GetArrayLength(env, states) != parts)) {
        throw_class(env, "java/lang/IllegalArgumentException", "node states: one per part, and only for parts");
        ok = 0;
    }
    if (ok) {
        uint32_t state = 0;
        inn_status s = part < 0     ? inn_graph_fill_spans(&h->bundle, &g, (void *const *)ptrs, sizes)
                       : parts <= 0 ? INN_ERR_ARG
                       : states     ? inn_graph_fill_part_verify(&h->bundle, &g, (void *const *)ptrs, sizes,
                                                                 (uint32_t)part, (uint32_t)parts, scr, scrn, &state)
                                    : inn_graph_fill_part(&h->bundle, &g, (void *const *)ptrs, sizes, (uint32_t)part,
                                                          (uint32_t)parts, scr, scrn);
        if (s == INN_OK && states) (*env)->SetIntArrayRegion(env, states, part, 1, (const jint *)&state);
        size_t first, end;
        if (s != INN_OK) {
            char what[96];
            snprintf(what, sizeof what, "filling graph of bucket %d (part %d of %d)", (int)bucket, (int)part, (int)parts);
            throw_status(env, s, what);
        } else if (part >= 0 && release && h->file_mapped &&
                   inn_graph_part_nodes(&h->bundle, &g, (uint32_t)part, (uint32_t)parts, &first, &end) == INN_OK) {
            drop_pages(h->bundle.data, first, end); /* the part's nodes are not read again by this fill */
        }
    }
    free(ptrs);
    free(sizes);
}

/* ------------------------------------------------------------------ width cache (inn_cache_*) */

/* The name of graph (bucket, runtime)'s width cache entry (ASCII); InnException(FORMAT) for a graph that names a
 * file other than by a plain file name (it is not kept). */
JNIEXPORT jbyteArray JNICALL Java_dev_innmobile_InnBundle_nCacheEntry(JNIEnv *env, jclass cls, jlong handle,
                                                                      jint bucket, jbyteArray runtime) {
    (void)cls;
    jni_bundle *h = handle_of(env, handle);
    inn_graph g;
    char rt[INN_RUNTIME_NAME + 1], name[INN_CACHE_NAME];
    if (!h || find_graph_named(env, h, bucket, runtime, &g, rt)) return NULL;
    inn_status s = inn_cache_entry(&h->bundle, &g, rt, name);
    if (s != INN_OK) {
        throw_status(env, s, "naming the width cache entry");
        return NULL;
    }
    jsize n = (jsize)strlen(name);
    jbyteArray out = (*env)->NewByteArray(env, n);
    if (out) (*env)->SetByteArrayRegion(env, out, 0, n, (const jbyte *)name);
    return out;
}

/* The stamp of graph (bucket, runtime)'s filled files `images` (direct buffers, in image order) when `stamp` is
 * null; else checks `images` (the kept files, mapped) against `stamp` and returns null, or throws InnException
 * (STALE: the stamp of other files; CHECKSUM: damaged files). */
JNIEXPORT jbyteArray JNICALL Java_dev_innmobile_InnBundle_nCacheStamp(JNIEnv *env, jclass cls, jlong handle,
                                                                      jint bucket, jbyteArray runtime,
                                                                      jobjectArray images, jbyteArray stamp) {
    (void)cls;
    jni_bundle *h = handle_of(env, handle);
    inn_graph g;
    char rt[INN_RUNTIME_NAME + 1];
    if (!h || find_graph_named(env, h, bucket, runtime, &g, rt)) return NULL;
    if ((uint32_t)(*env)->GetArrayLength(env, images) != g.image_count) {
        throw_class(env, "java/lang/IllegalArgumentException", "one buffer per image of the graph");
        return NULL;
    }
    void **ptrs;
    size_t *sizes;
    jbyteArray out = NULL;
    if (image_table(env, images, 1, &ptrs, &sizes)) {
        size_t n = stamp ? (size_t)(*env)->GetArrayLength(env, stamp) : inn_cache_stamp_size(&g);
        uint8_t *bytes = (uint8_t *)malloc(n ? n : 1);
        if (!bytes) {
            throw_class(env, "java/lang/OutOfMemoryError", "stamp");
        } else if (stamp) {
            (*env)->GetByteArrayRegion(env, stamp, 0, (jsize)n, (jbyte *)bytes);
            inn_status s = inn_cache_check(&h->bundle, &g, rt, bytes, n, (const void *const *)ptrs, sizes);
            if (s != INN_OK) throw_status(env, s, "checking the width cache's files");
        } else {
            inn_status s = inn_cache_stamp(&h->bundle, &g, rt, (const void *const *)ptrs, sizes, bytes, n);
            if (s != INN_OK) {
                throw_status(env, s, "stamping the width cache's files");
            } else if ((out = (*env)->NewByteArray(env, (jsize)n)) != NULL) {
                (*env)->SetByteArrayRegion(env, out, 0, (jsize)n, (const jbyte *)bytes);
            }
        }
        free(bytes);
    }
    free(ptrs);
    free(sizes);
    return out;
}

/* ------------------------------------------------------------------ what a width costs (BKIN, COST) */

/* Bucket `bucket`'s name as UTF-8 bytes (empty when the bundle predates BKIN) and its ratio in ratio_out[0]
 * (NaN when not set). */
JNIEXPORT jbyteArray JNICALL Java_dev_innmobile_InnBundle_nBucketInfo(JNIEnv *env, jclass cls, jlong handle,
                                                                      jint bucket, jdoubleArray ratio_out) {
    (void)cls;
    jni_bundle *h = handle_of(env, handle);
    if (!h) return NULL;
    inn_bucket_info info;
    inn_status s = bucket < 0 ? INN_ERR_MISSING : inn_bucket_info_get(&h->bundle, (uint32_t)bucket, &info);
    if (s != INN_OK) {
        char what[64];
        snprintf(what, sizeof what, "bucket %d", (int)bucket);
        throw_status(env, s, what);
        return NULL;
    }
    if ((*env)->GetArrayLength(env, ratio_out) < 1) {
        throw_class(env, "java/lang/IllegalArgumentException", "ratio_out needs 1 element");
        return NULL;
    }
    jdouble ratio = info.has_ratio ? info.ratio : NAN;
    (*env)->SetDoubleArrayRegion(env, ratio_out, 0, 1, &ratio);
    jsize len = (jsize)info.name_len;
    jbyteArray name = (*env)->NewByteArray(env, len);
    if (name && len) (*env)->SetByteArrayRegion(env, name, 0, len, (const jbyte *)info.name);
    return name;
}

/* A cost row into out[6] = {bucket, known, weights_bytes, file_bytes, arena_bytes, accuracy's double bits};
 * returns its runtime name (ASCII/UTF-8 bytes) or NULL with an exception pending. */
static jbyteArray cost_out(JNIEnv *env, const inn_bucket_cost *c, jlongArray out) {
    if ((*env)->GetArrayLength(env, out) < 6) {
        throw_class(env, "java/lang/IllegalArgumentException", "cost array needs 6 elements");
        return NULL;
    }
    if (c->weights_bytes > INT64_MAX || c->file_bytes > INT64_MAX || c->arena_bytes > INT64_MAX) {
        throw_status(env, INN_ERR_OVERFLOW, "a byte count larger than a Java long");
        return NULL;
    }
    jlong v[6] = {(jlong)c->bucket, (jlong)c->known, (jlong)c->weights_bytes, (jlong)c->file_bytes,
                  (jlong)c->arena_bytes, 0};
    memcpy(&v[5], &c->accuracy, sizeof c->accuracy);
    (*env)->SetLongArrayRegion(env, out, 0, 6, v);
    jsize len = (jsize)strlen(c->runtime);
    jbyteArray rt = (*env)->NewByteArray(env, len);
    if (rt) (*env)->SetByteArrayRegion(env, rt, 0, len, (const jbyte *)c->runtime);
    return rt;
}

JNIEXPORT jint JNICALL Java_dev_innmobile_InnBundle_nCostCount(JNIEnv *env, jclass cls, jlong handle) {
    (void)cls;
    return table_count(env, handle, inn_cost_count, "cost rows");
}

/* Cost row `index` (see cost_out). */
JNIEXPORT jbyteArray JNICALL Java_dev_innmobile_InnBundle_nCostRow(JNIEnv *env, jclass cls, jlong handle, jint index,
                                                                   jlongArray out) {
    (void)cls;
    jni_bundle *h = handle_of(env, handle);
    if (!h) return NULL;
    inn_bucket_cost c;
    inn_status s = index < 0 ? INN_ERR_MISSING : inn_cost_list(&h->bundle, (uint32_t)index, &c);
    if (s != INN_OK) {
        throw_status(env, s, "cost row");
        return NULL;
    }
    return cost_out(env, &c, out);
}

/* The cost row of (bucket, runtime) into out (see cost_out): true, or false when the bundle has none. */
JNIEXPORT jboolean JNICALL Java_dev_innmobile_InnBundle_nCostFind(JNIEnv *env, jclass cls, jlong handle, jint bucket,
                                                                  jbyteArray runtime, jlongArray out) {
    (void)cls;
    jni_bundle *h = handle_of(env, handle);
    if (!h) return JNI_FALSE;
    char rt[INN_RUNTIME_NAME + 1];
    jsize n = (*env)->GetArrayLength(env, runtime);
    if (n < 1 || n > INN_RUNTIME_NAME) {
        throw_class(env, "java/lang/IllegalArgumentException", "runtime names have 1 to 16 characters");
        return JNI_FALSE;
    }
    (*env)->GetByteArrayRegion(env, runtime, 0, n, (jbyte *)rt);
    rt[n] = '\0';
    inn_bucket_cost c;
    inn_status s = bucket < 0 ? INN_ERR_MISSING : inn_cost_find(&h->bundle, (uint32_t)bucket, rt, &c);
    if (s == INN_ERR_MISSING) return JNI_FALSE;
    if (s != INN_OK) {
        throw_status(env, s, "cost");
        return JNI_FALSE;
    }
    jbyteArray name = cost_out(env, &c, out);
    if (!name) return JNI_FALSE;
    (*env)->DeleteLocalRef(env, name);
    return JNI_TRUE;
}

/* ------------------------------------------------------------------ input-adaptive width (MACS, CSCD) */

/* Bucket `bucket`'s multiply-accumulates per input, or -1 when the bundle has no MACS (before 1.4). */
JNIEXPORT jlong JNICALL Java_dev_innmobile_InnBundle_nBucketMacs(JNIEnv *env, jclass cls, jlong handle, jint bucket) {
    (void)cls;
    jni_bundle *h = handle_of(env, handle);
    if (!h) return -1;
    uint64_t macs = 0;
    inn_status s = bucket < 0 ? INN_ERR_MISSING : inn_bucket_macs(&h->bundle, (uint32_t)bucket, &macs);
    if (s == INN_ERR_MISSING && bucket >= 0 && (uint32_t)bucket < h->bundle.bucket_count) return -1;
    if (s == INN_OK && macs > INT64_MAX) s = INN_ERR_OVERFLOW;
    if (s != INN_OK) {
        throw_status(env, s, "bucket MACs");
        return -1;
    }
    return (jlong)macs;
}

JNIEXPORT jint JNICALL Java_dev_innmobile_InnBundle_nCascadeCount(JNIEnv *env, jclass cls, jlong handle) {
    (void)cls;
    return table_count(env, handle, inn_cascade_count, "cascades");
}

/* Cascade `index`: out[7] = {score, target, step count, known, target value's, accuracy's and mean MACs' double
 * bits}, buckets[step count] and thresholds[step count] (arrays of at least that length, sized by a first call
 * with out only: pass NULL arrays to read the step count). Returns its name (UTF-8 bytes). */
JNIEXPORT jbyteArray JNICALL Java_dev_innmobile_InnBundle_nCascade(JNIEnv *env, jclass cls, jlong handle, jint index,
                                                                   jlongArray out, jintArray buckets,
                                                                   jfloatArray thresholds) {
    (void)cls;
    jni_bundle *h = handle_of(env, handle);
    if (!h) return NULL;
    inn_cascade c;
    inn_status s = index < 0 ? INN_ERR_MISSING : inn_cascade_get(&h->bundle, (uint32_t)index, &c);
    if (s != INN_OK) {
        throw_status(env, s, "cascade");
        return NULL;
    }
    if ((*env)->GetArrayLength(env, out) < 7) {
        throw_class(env, "java/lang/IllegalArgumentException", "cascade array needs 7 elements");
        return NULL;
    }
    jlong v[7] = {(jlong)c.score, (jlong)c.target, (jlong)c.step_count, (jlong)c.known, 0, 0, 0};
    memcpy(&v[4], &c.target_value, sizeof(double));
    memcpy(&v[5], &c.accuracy, sizeof(double));
    memcpy(&v[6], &c.mean_macs, sizeof(double));
    (*env)->SetLongArrayRegion(env, out, 0, 7, v);
    if (buckets && thresholds) {
        if ((uint32_t)(*env)->GetArrayLength(env, buckets) < c.step_count ||
            (uint32_t)(*env)->GetArrayLength(env, thresholds) < c.step_count) {
            throw_class(env, "java/lang/IllegalArgumentException", "step arrays shorter than the step count");
            return NULL;
        }
        for (uint32_t j = 0; j < c.step_count; j++) {
            uint32_t bucket;
            float t;
            if ((s = inn_cascade_step(&h->bundle, (uint32_t)index, j, &bucket, &t)) != INN_OK) {
                throw_status(env, s, "cascade step");
                return NULL;
            }
            jint b = (jint)bucket;
            (*env)->SetIntArrayRegion(env, buckets, (jsize)j, 1, &b);
            (*env)->SetFloatArrayRegion(env, thresholds, (jsize)j, 1, &t);
        }
    }
    jsize len = (jsize)c.name_len;
    jbyteArray name = (*env)->NewByteArray(env, len);
    if (name && len) (*env)->SetByteArrayRegion(env, name, 0, len, (const jbyte *)c.name);
    return name;
}
