package dev.innmobile;

/**
 * A non-zero status from the native core: a bundle that is truncated, corrupted or inconsistent, or a
 * request it cannot serve (bucket/layer out of range, buffer too small).
 *
 * <p>The message is the core's own text, formatted like the Python binding's {@code NativeError}:
 * {@code "<what>: <inn_status_str> (INN_ERR_<NAME>)"}. Thrown from JNI, so bad bundle bytes surface
 * as a Java exception the app can show, never as a native crash.
 */
public final class InnException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private static final String[] NAMES = {
        "OK", "ARG", "TRUNCATED", "MAGIC", "VERSION", "CHECKSUM", "FORMAT", "RANGE", "OVERFLOW", "BUFFER",
        "MISSING", "PARTITION", "UNVERIFIED", "STALE",
    };

    /** The {@code inn_status} code (see inn.h). */
    public final int status;

    /** Called from JNI (inn_jni.c looks this constructor up by signature: keep it). */
    public InnException(int status, String message) {
        super(message);
        this.status = status;
    }

    /** {@code "CHECKSUM"} for {@code INN_ERR_CHECKSUM}, and so on. */
    public String statusName() {
        return status >= 0 && status < NAMES.length ? NAMES[status] : "UNKNOWN";
    }
}
