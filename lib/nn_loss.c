/* nn_loss.c: softmax cross-entropy (hard labels, soft/mixup targets, label smoothing as torch's
 * CrossEntropyLoss(label_smoothing=e)) and SimCLR's NT-Xent, each returning the mean loss and its
 * gradient.  Log-sum-exp runs in double with the row maximum subtracted. */
#include <math.h>
#include <string.h>

#include "nn.h"

double nn_loss_ce(const float *logits, int n, int k, const int32_t *labels, const float *soft,
                  float smoothing, float *dlogits, int *n_correct)
{
    double total = 0;
    int correct = 0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (int64_t)i * k;
        float *dz = dlogits ? dlogits + (int64_t)i * k : NULL;
        const float *q = soft ? soft + (int64_t)i * k : NULL;
        const int32_t y = soft ? -1 : labels[i];
        if (!soft && (y < 0 || y >= k)) {   /* not a valid class: contributes nothing */
            if (dz) memset(dz, 0, sizeof(float) * k);
            continue;
        }
        int arg = 0, targ = y;
        double mx = z[0];
        for (int j = 1; j < k; j++)
            if (z[j] > mx || isnan(z[j])) mx = z[j], arg = j;
        if (q) {
            targ = 0;
            for (int j = 1; j < k; j++)
                if (q[j] > q[targ]) targ = j;
        }
        double se = 0;
        for (int j = 0; j < k; j++) se += exp((double)z[j] - mx);
        const double lse = mx + log(se);
        /* target t_j = (1 - e) q_j + e / k; loss = sum_j t_j (lse - z_j) */
        double loss = 0, tsum = 0;
        for (int j = 0; j < k; j++) {
            const double qj = q ? q[j] : (j == y ? 1.0 : 0.0);
            const double t = (1.0 - smoothing) * qj + smoothing / k;
            loss += t * (lse - z[j]);
            tsum += t;
        }
        if (dz)
            for (int j = 0; j < k; j++) {
                const double qj = q ? q[j] : (j == y ? 1.0 : 0.0);
                const double t = (1.0 - smoothing) * qj + smoothing / k;
                dz[j] = (float)((exp((double)z[j] - lse) * tsum - t) / n);
            }
        total += loss;
        correct += arg == targ;
    }
    if (n_correct) *n_correct = correct;
    return n > 0 ? total / n : 0.0;
}

size_t nn_ntxent_work_floats(int n2, int d) { return (size_t)n2 * d + (size_t)n2 * n2 + (size_t)n2; }

double nn_loss_ntxent(const float *z, int n2, int d, float temperature, float *dz, int *n_correct,
                      float *work)
{
    const int b = n2 / 2;
    float *zn = work, *s = work + (size_t)n2 * d, *norm = s + (size_t)n2 * n2;
    const double inv_t = 1.0 / temperature;
    /* F.normalize: z / max(|z|, 1e-12) */
    for (int i = 0; i < n2; i++) {
        double ss = 0;
        for (int j = 0; j < d; j++) ss += (double)z[(int64_t)i * d + j] * z[(int64_t)i * d + j];
        double nr = sqrt(ss);
        norm[i] = (float)(nr > 1e-12 ? nr : 1e-12);
        for (int j = 0; j < d; j++) zn[(int64_t)i * d + j] = (float)(z[(int64_t)i * d + j] / (double)norm[i]);
    }
    nn_sgemm(0, 1, n2, n2, d, (float)inv_t, zn, d, zn, d, 0.0f, s, n2);
    double total = 0;
    int correct = 0;
    /* each row: softmax over the other rows; s becomes dL/ds (already divided by n2) */
    for (int i = 0; i < n2; i++) {
        float *si = s + (size_t)i * n2;
        const int pos = i < b ? i + b : i - b;
        double mx = -INFINITY;
        int arg = -1;
        for (int j = 0; j < n2; j++)
            if (j != i && (arg < 0 || si[j] > mx)) mx = si[j], arg = j;
        double se = 0;
        for (int j = 0; j < n2; j++)
            if (j != i) se += exp((double)si[j] - mx);
        const double lse = mx + log(se);
        total += lse - si[pos];
        correct += arg == pos;
        for (int j = 0; j < n2; j++)
            si[j] = j == i ? 0.0f : (float)((exp((double)si[j] - lse) - (j == pos)) / n2);
    }
    if (n_correct) *n_correct = correct;
    if (dz) {
        /* dzn_i = (1/T) sum_j (G_ij + G_ji) zn_j, then through the normalisation:
         * dz_i = (dzn_i - zn_i (zn_i . dzn_i)) / |z_i| */
        for (int i = 0; i < n2; i++)
            for (int j = i + 1; j < n2; j++) {
                const float v = s[(size_t)i * n2 + j] + s[(size_t)j * n2 + i];
                s[(size_t)i * n2 + j] = s[(size_t)j * n2 + i] = v;
            }
        nn_sgemm(0, 0, n2, d, n2, (float)inv_t, s, n2, zn, d, 0.0f, dz, d);
        for (int i = 0; i < n2; i++) {
            float *g = dz + (int64_t)i * d;
            const float *u = zn + (int64_t)i * d;
            double dot = 0;
            for (int j = 0; j < d; j++) dot += (double)u[j] * g[j];
            for (int j = 0; j < d; j++) g[j] = (float)((g[j] - u[j] * dot) / norm[i]);
        }
    }
    return total / n2;
}
