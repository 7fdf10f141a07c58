package dev.innmobile;

import java.math.BigDecimal;
import java.math.RoundingMode;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * Picks the width bucket a device can afford: a line-by-line port of {@code inn_mobile/runtime/policy.py}
 * ({@code candidates} + {@code choose}), down to its messages, so the width chosen on the host is the
 * one the phone chooses (tests/test_android_host.py compares the two on the same bundles).
 *
 * <p>Per runtime, a bucket's costs come from the bundle's binary COST table ({@link InnBundle#cost}: no
 * JSON on the device): {@code accuracy} (%), {@code weights_bytes}, {@code arena_bytes}, measured at pack
 * time; a device {@link Profile} (from {@code inn-mobile profile}, parsed by the app) overrides memory with
 * its measured peak bytes and adds a latency. The rule:
 * <ol>
 *   <li>candidates: the buckets that ship a graph for the runtime, narrow to wide;
 *   <li>a candidate fits when its memory is within the budget and, when a latency budget is given and
 *       every candidate has a latency, its latency is within that too;
 *   <li>the most accurate fitting candidate wins, ties to the smaller memory; when some fitting
 *       candidate has no accuracy, the widest fitting one wins;
 *   <li>none fits: {@link NoWidthFits} names the smallest bucket and what it needs.
 * </ol>
 * A bundle's confidence cascades (CSCD, {@link Cascade}) can be candidates too
 * ({@code candidates(..., true)}): every step is materialised at once, so a cascade needs the sum of its
 * steps' memory and its latency is the sum of theirs (an input that reaches the last step runs them all);
 * its accuracy is the one calibrated at pack time. {@code choose(..., accuracyTolerance)} then trades
 * accuracy points for compute: among the fitting candidates within that many points of the most
 * accurate, the fewest MACs per input wins.
 * Plain Java: the Android app only supplies the budget ({@link #androidMemoryBudget}) and, optionally, a profile.
 */
public final class WidthPolicy {
    /** Share of {@code ActivityManager.MemoryInfo.availMem} the model may use. */
    public static final int AVAIL_MEM_DIVISOR = 8;
    /** Smaller share on {@code ActivityManager.isLowRamDevice()} devices. */
    public static final int LOW_RAM_AVAIL_MEM_DIVISOR = 16;

    private WidthPolicy() {}

    /** What one bucket (or cascade) costs and gives on one runtime ({@code Double.NaN}: not measured). */
    public static final class Candidate {
        /** The bucket's index in the bundle (what {@link InnBundle#fillGraph} takes); -1 for a cascade. */
        public final int bucket;
        /** The bucket's name, or {@code cascade:NAME}. */
        public final String name;
        public final double accuracy;
        public final long memoryBytes;
        public final double latencyMs;
        /** The cascade's name, or null for one bucket. */
        public final String cascade;
        /** MACs per input (a cascade: on average), NaN when the bundle does not say. */
        public final double macs;

        public Candidate(int bucket, String name, double accuracy, long memoryBytes, double latencyMs) {
            this(bucket, name, accuracy, memoryBytes, latencyMs, null, Double.NaN);
        }

        public Candidate(int bucket, String name, double accuracy, long memoryBytes, double latencyMs,
                         String cascade, double macs) {
            this.bucket = bucket;
            this.name = name;
            this.accuracy = accuracy;
            this.memoryBytes = memoryBytes;
            this.latencyMs = latencyMs;
            this.cascade = cascade;
            this.macs = macs;
        }
    }

    /** The chosen candidate, its position in the candidate list, and why (policy.py's {@code Choice}). */
    public static final class Choice {
        public final Candidate candidate;
        public final int index;
        public final String reason;

        Choice(Candidate candidate, int index, String reason) {
            this.candidate = candidate;
            this.index = index;
            this.reason = reason;
        }
    }

    /** No bucket fits the budget (policy.py's {@code BudgetError}). */
    public static final class NoWidthFits extends RuntimeException {
        private static final long serialVersionUID = 1L;

        NoWidthFits(String message) {
            super(message);
        }
    }

    /** The memory budget on Android: a share of what the system reports as available now. */
    public static long androidMemoryBudget(long availMem, boolean isLowRamDevice) {
        return Math.max(availMem, 0) / (isLowRamDevice ? LOW_RAM_AVAIL_MEM_DIVISOR : AVAIL_MEM_DIVISOR);
    }

    /** What one bucket measured on the device itself. */
    public static final class Measured {
        public final double latencyMs;
        public final long peakBytes;

        Measured(double latencyMs, long peakBytes) {
            this.latencyMs = latencyMs;
            this.peakBytes = peakBytes;
        }
    }

    /**
     * A device profile (policy.py's {@code load_profile}): per bucket name, the latency and peak memory
     * measured on the device for one runtime. The app reads it from wherever it keeps it.
     */
    public static final class Profile {
        public final String runtime;
        private final Map<String, Measured> buckets = new HashMap<>();

        public Profile(String runtime) {
            this.runtime = Objects.requireNonNull(runtime, "runtime");
        }

        public Profile put(String bucket, double latencyMs, long peakBytes) {
            buckets.put(bucket, new Measured(latencyMs, peakBytes));
            return this;
        }

        /** The bucket's measurements, or null when the profile has none for it. */
        public Measured get(String bucket) {
            return buckets.get(bucket);
        }
    }

    /** Candidates for {@code runtime} from an open bundle and an optional device profile (null for none). */
    public static List<Candidate> candidates(InnBundle bundle, String runtime, Profile profile) {
        return candidates(bundle, runtime, profile, false);
    }

    /**
     * The same; with {@code cascades} also one candidate per cascade whose steps all have graphs, after the
     * buckets.
     */
    public static List<Candidate> candidates(InnBundle bundle, String runtime, Profile profile, boolean cascades) {
        if (profile != null && !runtime.equals(profile.runtime)) {
            throw new IllegalArgumentException("the profile was measured for " + repr(profile.runtime) + ", not "
                    + repr(runtime));
        }
        List<Integer> withGraph = new ArrayList<>();
        List<String> all = new ArrayList<>();
        for (InnBundle.Graph g : bundle.graphs()) {
            if (g.runtime.equals(runtime)) {
                withGraph.add(g.bucket);
            }
            if (!all.contains(g.runtime)) {
                all.add(g.runtime);
            }
        }
        Collections.sort(all);
        List<Candidate> out = new ArrayList<>();
        for (int k = 0; k < bundle.bucketCount; k++) {
            if (!withGraph.contains(k)) {
                continue;
            }
            String name = bundle.bucketInfo(k).name;
            InnBundle.Cost cost = bundle.cost(k, runtime);
            Measured row = profile == null ? null : profile.get(name);
            long memory;
            double latency = Double.NaN;
            if (row != null) {
                memory = row.peakBytes;
                latency = row.latencyMs;
            } else if (cost != null && cost.has(InnBundle.Cost.WEIGHTS_BYTES)) {
                memory = cost.weightsBytes + (cost.has(InnBundle.Cost.ARENA_BYTES) ? cost.arenaBytes : 0);
            } else {
                throw new IllegalArgumentException("bucket " + repr(name) + " has no memory measurement for "
                        + repr(runtime) + " (pack it with inn_mobile.export.pack, or pass a device profile)");
            }
            double accuracy = cost != null && cost.has(InnBundle.Cost.ACCURACY) ? cost.accuracy : Double.NaN;
            long macs = bundle.macs(k);
            out.add(new Candidate(k, name, accuracy, memory, latency, null, macs < 0 ? Double.NaN : macs));
        }
        if (out.isEmpty()) {
            throw new IllegalArgumentException("the bundle has no " + repr(runtime) + " graphs; it has "
                    + (all.isEmpty() ? "none" : pyList(all)));
        }
        if (cascades) {
            out.addAll(cascadeCandidates(bundle, out));
        }
        return out;
    }

    private static List<Candidate> cascadeCandidates(InnBundle bundle, List<Candidate> buckets) {
        Map<Integer, Candidate> byBucket = new HashMap<>();
        for (Candidate c : buckets) {
            byBucket.put(c.bucket, c);
        }
        List<Candidate> out = new ArrayList<>();
        for (Cascade c : bundle.cascades()) {
            long memory = 0;
            double latency = 0;
            boolean complete = true;
            for (int k : c.buckets) {
                Candidate step = byBucket.get(k);
                if (step == null) {
                    complete = false;
                    break;
                }
                memory += step.memoryBytes;
                latency += step.latencyMs;  // NaN as soon as one step has no latency
            }
            if (complete) {
                out.add(new Candidate(-1, "cascade:" + c.name, c.has(Cascade.ACCURACY) ? c.accuracy : Double.NaN,
                        memory, latency, c.name, c.has(Cascade.MEAN_MACS) ? c.meanMacs : Double.NaN));
            }
        }
        return out;
    }

    /**
     * The most accurate candidate within both budgets ({@code latencyBudgetMs}: NaN for none).
     *
     * @throws NoWidthFits when none fits, naming the smallest bucket and what it needs
     */
    public static Choice choose(List<Candidate> candidates, long memoryBudget, double latencyBudgetMs) {
        return choose(candidates, memoryBudget, latencyBudgetMs, 0.0);
    }

    /**
     * The same, trading up to {@code accuracyTolerance} points of accuracy for compute: among the fitting
     * candidates within it of the most accurate (and with known MACs), the fewest MACs per input wins.
     */
    public static Choice choose(List<Candidate> candidates, long memoryBudget, double latencyBudgetMs,
                                double accuracyTolerance) {
        if (candidates.isEmpty()) {
            throw new NoWidthFits("the bundle has no buckets for this runtime");
        }
        boolean haveLatencyBudget = !Double.isNaN(latencyBudgetMs);
        boolean useLatency = haveLatencyBudget;
        for (Candidate c : candidates) {
            useLatency &= !Double.isNaN(c.latencyMs);
        }
        List<Integer> fits = new ArrayList<>();
        for (int i = 0; i < candidates.size(); i++) {
            Candidate c = candidates.get(i);
            if (c.memoryBytes <= memoryBudget && (!useLatency || c.latencyMs <= latencyBudgetMs)) {
                fits.add(i);
            }
        }
        if (fits.isEmpty()) {
            Candidate small = candidates.get(0);
            for (Candidate c : candidates) {
                if (c.memoryBytes < small.memoryBytes) {
                    small = c;
                }
            }
            String need = mib(small.memoryBytes) + (useLatency ? " and " + f2(small.latencyMs) + " ms" : "");
            throw new NoWidthFits("no bucket fits: budget " + mib(memoryBudget)
                    + (useLatency ? " / " + f2(latencyBudgetMs) + " ms" : "")
                    + "; the smallest bucket " + repr(small.name) + " needs " + need);
        }
        boolean measured = true;
        for (int i : fits) {
            measured &= !Double.isNaN(candidates.get(i).accuracy);
        }
        int best = fits.get(0);
        for (int i : fits) {
            Candidate c = candidates.get(i), b = candidates.get(best);
            boolean better = measured
                    ? c.accuracy > b.accuracy || (c.accuracy == b.accuracy && c.memoryBytes < b.memoryBytes)
                    : i > best;
            if (better) {
                best = i;
            }
        }
        if (measured && accuracyTolerance > 0) {
            double top = candidates.get(best).accuracy;
            int lean = -1;
            for (int i : fits) {
                Candidate c = candidates.get(i);
                if (c.accuracy < top - accuracyTolerance || Double.isNaN(c.macs)) {
                    continue;
                }
                Candidate l = lean < 0 ? null : candidates.get(lean);
                if (l == null || c.macs < l.macs || (c.macs == l.macs && (c.accuracy > l.accuracy
                        || (c.accuracy == l.accuracy && c.memoryBytes < l.memoryBytes)))) {
                    lean = i;
                }
            }
            if (lean >= 0) {
                best = lean;
            }
        }
        Candidate c = candidates.get(best);
        List<String> why = new ArrayList<>();
        why.add(mib(c.memoryBytes) + " <= " + mib(memoryBudget));
        if (useLatency) {
            why.add(f2(c.latencyMs) + " ms <= " + f2(latencyBudgetMs) + " ms");
        } else if (haveLatencyBudget) {
            why.add("latency budget ignored: no device profile");
        }
        String acc = !Double.isNaN(c.accuracy) ? f2(c.accuracy) + "% accurate"
                : "accuracy not measured: widest that fits";
        List<String> excluded = new ArrayList<>();
        for (int i = 0; i < candidates.size(); i++) {
            if (!fits.contains(i)) {
                excluded.add(candidates.get(i).name);
            }
        }
        String tail = excluded.isEmpty() ? "" : "; over budget: " + String.join(", ", excluded);
        return new Choice(c, best, c.name + ": " + acc + ", " + String.join(", ", why) + tail);
    }

    // ------------------------------------------------------------------ Python formatting, exactly

    /** Python's {@code f"{x:.2f}"}: the exact binary value rounded half to even. */
    static String f2(double x) {
        if (Double.isNaN(x) || Double.isInfinite(x)) {
            return Double.isNaN(x) ? "nan" : x > 0 ? "inf" : "-inf";
        }
        return new BigDecimal(x).setScale(2, RoundingMode.HALF_EVEN).toPlainString();
    }

    /** policy.py's {@code _mib}. */
    static String mib(long n) {
        return f2(n / (double) (1L << 20)) + " MiB";
    }

    /** Python's {@code repr} of a simple string (bucket and runtime names). */
    private static String repr(Object s) {
        return s == null ? "None" : "'" + s + "'";
    }

    private static String pyList(List<String> names) {
        List<String> quoted = new ArrayList<>();
        for (String n : names) {
            quoted.add(repr(n));
        }
        return "[" + String.join(", ", quoted) + "]";
    }
}
