package dev.innmobile;

/** One layer at one width bucket, as the core sees it ({@code inn_layer_info} in inn.h). */
public final class LayerInfo {
    public static final int KIND_DENSE = 1;
    public static final int KIND_DEPTHWISE = 2;
    public static final int KIND_AFFINE = 3;

    public final String name;
    public final int kind;
    public final int blocks;
    public final int taps;
    public final boolean hasBias;
    /** Channels at this bucket ({@code nIn}: total over blocks; 0 for depthwise and affine layers). */
    public final int nOut;
    public final int nIn;
    /** Elements of the weight (affine layers: of the scale vector). */
    public final long weightCount;

    LayerInfo(String name, long[] v) {
        this.name = name;
        this.kind = (int) v[0];
        this.blocks = (int) v[1];
        this.taps = (int) v[2];
        this.hasBias = v[3] != 0;
        this.nOut = (int) v[4];
        this.nIn = (int) v[5];
        this.weightCount = v[8];
    }

    /** Whether the core writes a per-output-channel vector next to the weight (bias, or an affine shift). */
    public boolean hasVector() {
        return hasBias || kind == KIND_AFFINE;
    }

    @Override
    public String toString() {
        return name + " (kind " + kind + ", " + nOut + "x" + nIn + "x" + taps + ", blocks " + blocks + ")";
    }
}
