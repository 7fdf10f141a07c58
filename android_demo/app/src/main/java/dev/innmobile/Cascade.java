package dev.innmobile;

/**
 * An input-adaptive width: a confidence cascade across a bundle's buckets (its CSCD table, format 1.4),
 * read with {@link InnBundle#cascades()}. Run step 0's bucket on an input; keep its answer when
 * {@link #accepts} says so, else run the next step's bucket; the last step answers every input that reaches
 * it. Materialise every step's model once at start-up: the memory is the sum of the steps'. The
 * confidence is the one {@code inn_mobile/runtime/cascade.py} computes (softmax in double), so the
 * thresholds calibrated at pack time mean the same here.
 */
public final class Cascade {
    /** {@link #score}: the core's {@code inn_score}. */
    public static final int MAX_PROB = 1;
    public static final int MARGIN = 2;
    /** {@link #target}: the core's {@code inn_target}. */
    public static final int TARGET_NONE = 0;
    public static final int TARGET_ACCURACY_DROP = 1;
    public static final int TARGET_MEAN_MACS = 2;
    /** Flags of {@link #known}: the core's {@code INN_CASCADE_*}. */
    public static final int ACCURACY = 1;
    public static final int MEAN_MACS = 2;

    public final String name;
    public final int score;
    public final int target;
    /** Accuracy points below the widest bucket, or mean MACs per input. */
    public final double targetValue;
    public final int known;
    /** Percent on the calibration data (when {@link #ACCURACY} is known). */
    public final double accuracy;
    /** Multiply-accumulates per input on the calibration data (when {@link #MEAN_MACS} is known). */
    public final double meanMacs;
    /** Per step: the bucket to run and the confidence its answer needs (the last is 0). */
    public final int[] buckets;
    public final float[] thresholds;
    /** Per step: the bucket's MACs per input from the bundle's MACS table, or null before format 1.4. */
    public final long[] macs;

    Cascade(String name, long[] v, int[] buckets, float[] thresholds, long[] macs) {
        this.name = name;
        this.score = (int) v[0];
        this.target = (int) v[1];
        this.known = (int) v[3];
        this.targetValue = Double.longBitsToDouble(v[4]);
        this.accuracy = Double.longBitsToDouble(v[5]);
        this.meanMacs = Double.longBitsToDouble(v[6]);
        this.buckets = buckets;
        this.thresholds = thresholds;
        this.macs = macs;
    }

    public int steps() {
        return buckets.length;
    }

    public boolean has(int field) {
        return (known & field) != 0;
    }

    /** The confidence of one input's outputs: the top softmax probability, or the top minus the second. */
    public static double confidence(float[] logits, int score) {
        double max = Double.NEGATIVE_INFINITY;
        for (float z : logits) max = Math.max(max, z);
        double sum = 0, top = 0, second = 0;
        double[] p = new double[logits.length];
        for (int i = 0; i < logits.length; i++) sum += p[i] = Math.exp(logits[i] - max);
        for (int i = 0; i < logits.length; i++) {
            double q = p[i] / sum;
            if (q > top) {
                second = top;
                top = q;
            } else if (q > second) {
                second = q;
            }
        }
        if (score == MAX_PROB) return top;
        if (score == MARGIN) return top - second;
        throw new IllegalArgumentException("unknown cascade score " + score);
    }

    /** Whether step {@code step}'s outputs answer this input (the last step answers every input). */
    public boolean accepts(int step, float[] logits) {
        return step == steps() - 1 || confidence(logits, score) >= thresholds[step];
    }

    /** MACs spent on an input answered at {@code step}: every step up to it ran (-1 without MACS). */
    public long macsUpTo(int step) {
        if (macs == null) return -1;
        long sum = 0;
        for (int j = 0; j <= step; j++) sum += macs[j];
        return sum;
    }
}
