/* aug_test: augmentation operations against torchvision 0.14 (float tensors) and known answers, the
 * crop-box distribution against torchvision's own sampler, SpecAugment bounds, mixup, and the stream
 * engine: views, epochs, shuffling, --start, soft labels and independence from the thread count. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aug.h"
#include "test.h"

/* References: torchvision.transforms.functional_tensor (torch 1.13, torchvision 0.14.1, Debian 12) with
 * rgb_to_grayscale replaced by the 0.299/0.587/0.114 weights earsight uses (torchvision's tensor path
 * has 0.2989), printed with "%.9g":
 *   x = torch.tensor([[[((31*c + 7*y + 13*x) % 23) / 22.0 for x in range(5)] for y in range(4)]
 *                     for c in range(3)], dtype=torch.float32)
 *   ref_brightness_1_3 = F_t.adjust_brightness(x, 1.3); ref_contrast_0_6 = F_t.adjust_contrast(x, 0.6)
 *   ref_contrast_1_5, ref_saturation_0_3, ref_saturation_1_7: likewise; ref_hue_0_1 = F_t.adjust_hue(x, 0.1)
 *   ref_hue_m0_35 (-0.35), ref_hue_0_5 (0.5); ref_gray = the 3-channel grayscale of x
 *   xb = the same formula on 3 x 8 x 9; ref_blur_5_1_3 = F_t.gaussian_blur(xb, [5, 5], [1.3, 1.3])
 *   ref_blur_7_0_6 = F_t.gaussian_blur(xb, [7, 7], [0.6, 0.6]) */
static const float ref_brightness_1_3[60] = {
    0, 0.768181741, 0.177272722, 0.945454538, 0.354545444, 0.413636327, 1, 0.590909064,
    0, 0.768181741, 0.827272654, 0.236363634, 1, 0.413636327, 1, 1,
    0.649999976, 0.0590909086, 0.827272654, 0.236363634, 0.472727269, 1, 0.649999976, 0.0590909086,
    0.827272654, 0.886363626, 0.295454532, 1, 0.472727269, 1, 1, 0.709090889,
    0.118181817, 0.886363626, 0.295454532, 0.354545444, 1, 0.531818151, 1, 0.709090889,
    0.945454538, 0.354545444, 1, 0.531818151, 1, 0, 0.768181741, 0.177272722,
    0.945454538, 0.354545444, 0.413636327, 1, 0.590909064, 0, 0.768181741, 0.827272654,
    0.236363634, 1, 0.413636327, 1,
};
static const float ref_contrast_0_6[60] = {
    0.20891729, 0.563462734, 0.290735483, 0.645280957, 0.372553647, 0.399826407, 0.754371881, 0.481644571,
    0.20891729, 0.563462734, 0.590735495, 0.318008214, 0.672553658, 0.399826407, 0.754371881, 0.781644583,
    0.508917332, 0.236190021, 0.590735495, 0.318008214, 0.427099109, 0.781644583, 0.508917332, 0.236190021,
    0.590735495, 0.618008256, 0.345280945, 0.69982636, 0.427099109, 0.781644583, 0.808917284, 0.536190033,
    0.263462752, 0.618008256, 0.345280945, 0.372553647, 0.72709918, 0.45437184, 0.808917284, 0.536190033,
    0.645280957, 0.372553647, 0.72709918, 0.45437184, 0.808917284, 0.20891729, 0.563462734, 0.290735483,
    0.645280957, 0.372553647, 0.399826407, 0.754371881, 0.481644571, 0.20891729, 0.563462734, 0.590735495,
    0.318008214, 0.672553658, 0.399826407, 0.754371881,
};
static const float ref_contrast_1_5[60] = {
    0, 0.625217021, 0, 0.829762518, 0.147944331, 0.216126114, 1, 0.420671582,
    0, 0.625217021, 0.693398833, 0.0115806758, 0.897944272, 0.216126114, 1, 1,
    0.488853395, 0, 0.693398833, 0.0115806758, 0.284307957, 1, 0.488853395, 0,
    0.693398833, 0.761580646, 0.0797624886, 0.966126144, 0.284307957, 1, 1, 0.557035267,
    0, 0.761580646, 0.0797624886, 0.147944331, 1, 0.352489769, 1, 0.557035267,
    0.829762518, 0.147944331, 1, 0.352489769, 1, 0, 0.625217021, 0,
    0.829762518, 0.147944331, 0.216126114, 1, 0.420671582, 0, 0.625217021, 0.693398833,
    0.0115806758, 0.897944272, 0.216126114, 1,
};
static const float ref_saturation_0_3[60] = {
    0.207454547, 0.714936376, 0.343818158, 0.42172274, 0.480181873, 0.442209095, 0.603540897, 0.57857275,
    0.207454547, 0.714936376, 0.760390878, 0.389272749, 0.467177272, 0.442209095, 0.603540897, 0.648995459,
    0.624027252, 0.252909094, 0.760390878, 0.389272749, 0.316545457, 0.8240273, 0.452909082, 0.217177272,
    0.589272797, 0.551300049, 0.398995459, 0.687663674, 0.316545457, 0.8240273, 0.869481802, 0.498363674,
    0.262631804, 0.551300049, 0.398995459, 0.444450021, 0.733118176, 0.361999989, 0.869481802, 0.498363674,
    0.425636381, 0.619481802, 0.562000036, 0.326268196, 0.698363662, 0.346754551, 0.508086383, 0.483118176,
    0.425636381, 0.619481802, 0.664936364, 0.607454538, 0.371722728, 0.346754551, 0.508086383, 0.553540945,
    0.528572738, 0.471090913, 0.664936364, 0.607454538,
};
static const float ref_saturation_1_7[60] = {
    0, 0.466881812, 0, 1, 0.0652727187, 0.194154561, 1, 0.330518216,
    0, 0.466881812, 0.512336433, 0, 1, 0.194154561, 1, 1,
    0.375972748, 0, 0.512336433, 0, 0.410727262, 1, 0.547090948, 0,
    0.683454514, 0.812336445, 0.055550009, 0.948699951, 0.410727262, 1, 1, 0.592545509,
    0, 0.812336445, 0.055550009, 0.101004571, 0.994154572, 0.456181824, 1, 0.592545509,
    1, 0, 1, 0.491913617, 1, 0, 0.673731804, 0,
    1, 0, 0, 1, 0.537368238, 0, 0.673731804, 0.719186425,
    0, 1, 0, 1,
};
static const float ref_hue_0_1[60] = {
    0.0727268606, 0.272727311, 0.209090486, 0.727272749, 0.345454097, 0, 0.909090936, 0.136363596,
    0.0727268606, 0.272727311, 0.318181813, 0.254545063, 0.772727251, 0, 0.909090936, 0.954545438,
    0.181818217, 0.118181393, 0.318181813, 0.254545063, 0, 0.954545438, 0.136363626, 0.0909092203,
    0.272727251, 0.681818187, 0.2727274, 0.818181813, 0, 0.954545438, 1, 0.181818172,
    0.136363804, 0.681818187, 0.2727274, 0.318181962, 0.863636374, 0.0454545431, 1, 0.181818172,
    0.727272749, 0.363636166, 0.863636374, 0.0454545468, 1, 0.0909088403, 0.227272734, 0.227272451,
    0.727272749, 0.363636166, 0.409090638, 0.909090936, 0.0909091309, 0.0909088403, 0.227272734, 0.272727311,
    0.272727072, 0.772727251, 0.409090638, 0.909090936,
};
static const float ref_hue_m0_35[60] = {
    0.436363935, 0.954545438, 0.572727501, 0.0454545468, 0.709091187, 0.681818187, 0.227272734, 0.818181813,
    0.436363935, 0.954545438, 1, 0.618182123, 0.0909091309, 0.681818187, 0.227272734, 0.272727311,
    0.863636374, 0.481818467, 1, 0.618182123, 0.727272749, 0.272727311, 0.863636374, 0.477272838,
    1, 0, 0.659090996, 0.136363596, 0.727272749, 0.272727311, 0.318181813, 0.909090936,
    0.52272737, 0, 0.659090996, 0.704545557, 0.181818217, 0.772727251, 0.318181813, 0.909090936,
    0, 0.659091234, 0.136363626, 0.727272749, 0.272727251, 0.386363924, 0.909090936, 0.522727489,
    0, 0.659091234, 0.704545736, 0.181818172, 0.772727251, 0.386363924, 0.909090936, 0.954545438,
    0.568182111, 0.0454545431, 0.704545736, 0.181818172,
};
static const float ref_hue_0_5[60] = {
    0.727272749, 0.636363328, 0.863636374, 0.0454545468, 1, 0.363636017, 0.227272734, 0.499999642,
    0.727272749, 0.636363328, 0.68181783, 0.909090936, 0.0909091309, 0.363636017, 0.227272734, 0.272727311,
    0.545454204, 0.772727251, 0.68181783, 0.909090936, 0.363636017, 0.272727311, 0.499999642, 0.727272749,
    0.636363268, 0, 0.909090936, 0.136363596, 0.363636017, 0.272727311, 0.318181813, 0.545454204,
    0.772727251, 0, 0.909090936, 0.954545438, 0.181818217, 0.409090549, 0.318181813, 0.545454204,
    0, 0.954545438, 0.136363626, 0.363636374, 0.272727251, 0.681818187, 0.545454562, 0.818181813,
    0, 0.954545438, 1, 0.181818172, 0.409090906, 0.681818187, 0.545454562, 0.590909123,
    0.863636374, 0.0454545431, 1, 0.181818172,
};
static const float ref_gray[60] = {
    0.296363652, 0.768090904, 0.432727277, 0.290772736, 0.569090962, 0.495363653, 0.472590923, 0.631727278,
    0.296363652, 0.768090904, 0.813545406, 0.478181839, 0.336227268, 0.495363653, 0.472590923, 0.518045485,
    0.67718184, 0.341818184, 0.813545406, 0.478181839, 0.296363652, 0.768090904, 0.432727277, 0.290772736,
    0.569090962, 0.495363653, 0.472590923, 0.631727278, 0.296363652, 0.768090904, 0.813545406, 0.478181839,
    0.336227268, 0.495363653, 0.472590923, 0.518045485, 0.67718184, 0.341818184, 0.813545406, 0.478181839,
    0.296363652, 0.768090904, 0.432727277, 0.290772736, 0.569090962, 0.495363653, 0.472590923, 0.631727278,
    0.296363652, 0.768090904, 0.813545406, 0.478181839, 0.336227268, 0.495363653, 0.472590923, 0.518045485,
    0.67718184, 0.341818184, 0.813545406, 0.478181839,
};
static const float ref_blur_5_1_3[216] = {
    0.489807338, 0.474958509, 0.446129054, 0.436024129, 0.441709459, 0.473275423, 0.511455834, 0.546613574,
    0.567760885, 0.501211762, 0.482097477, 0.449115515, 0.438133568, 0.444808751, 0.470796943, 0.500258029,
    0.533499658, 0.55218482, 0.511843204, 0.495794535, 0.472220272, 0.467382938, 0.465527445, 0.464745402,
    0.468341529, 0.496525466, 0.511737764, 0.512554049, 0.503269315, 0.489017963, 0.48716256, 0.482325226,
    0.472220272, 0.467382938, 0.485366791, 0.496201068, 0.502468765, 0.506366074, 0.51283747, 0.510982037,
    0.49999997, 0.489017963, 0.48716256, 0.493633956, 0.497531235, 0.503798962, 0.514633179, 0.532617152,
    0.527779758, 0.517674804, 0.51283747, 0.510982037, 0.496730685, 0.48744607, 0.528670192, 0.543882608,
    0.561866522, 0.550884485, 0.531371891, 0.523468971, 0.514479101, 0.495057285, 0.474856138, 0.536827147,
    0.551360011, 0.56397593, 0.553870916, 0.538510859, 0.536542654, 0.524004042, 0.501109302, 0.473577261,
    0.57187742, 0.5443452, 0.521450579, 0.508911848, 0.506943703, 0.491583616, 0.481478661, 0.4940947,
    0.508627415, 0.570598364, 0.550397277, 0.530975521, 0.52198571, 0.51408273, 0.494570076, 0.48358807,
    0.501572013, 0.51678443, 0.558008552, 0.548723936, 0.534472525, 0.532617152, 0.527779758, 0.517674804,
    0.51283747, 0.530821383, 0.541655719, 0.527523339, 0.527042508, 0.524983346, 0.531658471, 0.535254598,
    0.534472525, 0.532617152, 0.539088488, 0.542985797, 0.499697387, 0.499896109, 0.497157335, 0.502842724,
    0.513573229, 0.524983346, 0.531658471, 0.531985223, 0.532900631, 0.467099428, 0.468014777, 0.468341529,
    0.475016743, 0.4864268, 0.497157335, 0.502842724, 0.500103891, 0.500302672, 0.443713516, 0.451763272,
    0.464282215, 0.470957339, 0.470175296, 0.465240836, 0.465868533, 0.459656835, 0.463328511, 0.436893791,
    0.449284792, 0.467381388, 0.473066866, 0.462961882, 0.447601765, 0.44563362, 0.440025568, 0.446875781,
    0.44612661, 0.455178767, 0.473275423, 0.511455834, 0.526774228, 0.546505153, 0.55436641, 0.588485181,
    0.597762644, 0.454283595, 0.45827806, 0.470796943, 0.500258029, 0.511990905, 0.526873827, 0.534131527,
    0.564798415, 0.575858474, 0.492063582, 0.478996783, 0.464745402, 0.468341529, 0.475016743, 0.4864268,
    0.497157335, 0.524351478, 0.538884223, 0.511843204, 0.495794535, 0.472220272, 0.467382938, 0.465527445,
    0.464745402, 0.468341529, 0.496525466, 0.511737764, 0.512554049, 0.503269315, 0.489017963, 0.48716256,
    0.482325226, 0.472220272, 0.467382938, 0.485366791, 0.496201068, 0.502468765, 0.506366074, 0.51283747,
    0.510982037, 0.49999997, 0.489017963, 0.48716256, 0.493633956, 0.497531235, 0.494650722, 0.501332521,
    0.523468971, 0.514479101, 0.508526623, 0.509736717, 0.516411901, 0.502160549, 0.4945454, 0.49314642,
    0.502424002, 0.536542654, 0.524004042, 0.51457864, 0.512835979, 0.518521309, 0.494947106, 0.482953727,
};
static const float ref_blur_7_0_6[216] = {
    0.303146809, 0.522331655, 0.358948946, 0.428600729, 0.438011497, 0.563188016, 0.570811987, 0.698312879,
    0.683889925, 0.457943857, 0.61823684, 0.453947455, 0.291344464, 0.474543631, 0.397274673, 0.496031493,
    0.504643559, 0.608679116, 0.542077959, 0.442797452, 0.51209861, 0.435285598, 0.617148817, 0.454552144,
    0.292387635, 0.475686222, 0.403696686, 0.68364948, 0.500341952, 0.337397635, 0.519259274, 0.44244653,
    0.512098849, 0.435287982, 0.618580163, 0.546160996, 0.482085496, 0.557459533, 0.480740607, 0.662602663,
    0.49999994, 0.337397307, 0.519259393, 0.442540497, 0.517914534, 0.453839958, 0.381420791, 0.56471312,
    0.487901777, 0.557552814, 0.480740845, 0.66260159, 0.499658078, 0.316349745, 0.59735328, 0.525362909,
    0.708655357, 0.546052873, 0.382113189, 0.564875424, 0.487157106, 0.557364702, 0.457176477, 0.459196061,
    0.562325358, 0.571399629, 0.641051352, 0.478017151, 0.718343616, 0.498606026, 0.392787635, 0.493279666,
    0.552174807, 0.652666867, 0.546848416, 0.327110887, 0.56743747, 0.40440309, 0.474054992, 0.483129203,
    0.586258531, 0.588278055, 0.48808983, 0.558297515, 0.480579197, 0.663341224, 0.499401629, 0.336799085,
    0.520091772, 0.448101133, 0.729104698, 0.545795977, 0.382851124, 0.564713299, 0.487901896, 0.557552874,
    0.480741501, 0.664033711, 0.591614485, 0.52752614, 0.602469862, 0.524414182, 0.707613051, 0.54544723,
    0.382850081, 0.564713538, 0.487995088, 0.563369215, 0.498405278, 0.398230463, 0.495294929, 0.50470525,
    0.602119684, 0.524413824, 0.707612693, 0.545105219, 0.361803293, 0.638195932, 0.4548949, 0.292386472,
    0.475586563, 0.397880822, 0.495293856, 0.504705071, 0.601768851, 0.501594663, 0.435887128, 0.51216644,
    0.434547901, 0.617748082, 0.455151051, 0.291648299, 0.475747228, 0.396786392, 0.472635657, 0.361537069,
    0.346253365, 0.471079767, 0.480490029, 0.550142288, 0.387108862, 0.627437711, 0.407362968, 0.281626016,
    0.450984865, 0.438361257, 0.563188374, 0.570810556, 0.696882486, 0.592288136, 0.372562468, 0.613428712,
    0.483873188, 0.312828511, 0.474892527, 0.397275001, 0.496031433, 0.504543304, 0.602863431, 0.524253666,
    0.709788799, 0.636894405, 0.458104789, 0.617498994, 0.454552472, 0.292387545, 0.475585878, 0.397881001,
    0.495294511, 0.50480628, 0.60793525, 0.542078078, 0.442796737, 0.512099206, 0.435286611, 0.61714983,
    0.45455274, 0.292386949, 0.475686401, 0.403695971, 0.68364948, 0.500341952, 0.337397635, 0.519259274,
    0.44244653, 0.512098849, 0.435287982, 0.618580163, 0.546160996, 0.482085615, 0.557458878, 0.480740756,
    0.662601948, 0.50000006, 0.337396592, 0.51925987, 0.442541122, 0.517913699, 0.45400092, 0.380675972,
    0.564874053, 0.487157464, 0.557714939, 0.480002135, 0.663200498, 0.500256181, 0.315618753, 0.607035935,
    0.477479577, 0.718343079, 0.498606384, 0.39313826, 0.516535461, 0.525944233, 0.595246971, 0.410180926,
};

static void fill_img(float *x, int c, int h, int w)
{
    for (int k = 0; k < c; k++)
        for (int y = 0; y < h; y++)
            for (int i = 0; i < w; i++) x[(k * h + y) * w + i] = ((31 * k + 7 * y + 13 * i) % 23) / 22.0f;
}

static void test_colour_ops(void)
{
    float x[60], t[20];
    /* Float32 arithmetic in a different order than torch: a few ulps. */
    const double tol = 2e-6;
    fill_img(x, 3, 4, 5); aug_brightness(x, 3, 20, 1.3f);
    test_close("brightness 1.3 vs torchvision", x, ref_brightness_1_3, 60, tol, 1.0);
    fill_img(x, 3, 4, 5); aug_contrast(x, 3, 20, 0.6f);
    test_close("contrast 0.6 vs torchvision", x, ref_contrast_0_6, 60, tol, 1.0);
    fill_img(x, 3, 4, 5); aug_contrast(x, 3, 20, 1.5f);
    test_close("contrast 1.5 vs torchvision", x, ref_contrast_1_5, 60, tol, 1.0);
    fill_img(x, 3, 4, 5); aug_saturation(x, 3, 20, 0.3f, t);
    test_close("saturation 0.3 vs torchvision", x, ref_saturation_0_3, 60, tol, 1.0);
    fill_img(x, 3, 4, 5); aug_saturation(x, 3, 20, 1.7f, t);
    test_close("saturation 1.7 vs torchvision", x, ref_saturation_1_7, 60, tol, 1.0);
    fill_img(x, 3, 4, 5); aug_hue(x, 3, 20, 0.1f);
    test_close("hue +0.1 vs torchvision", x, ref_hue_0_1, 60, tol, 1.0);
    fill_img(x, 3, 4, 5); aug_hue(x, 3, 20, -0.35f);
    test_close("hue -0.35 vs torchvision", x, ref_hue_m0_35, 60, tol, 1.0);
    fill_img(x, 3, 4, 5); aug_hue(x, 3, 20, 0.5f);
    test_close("hue +0.5 vs torchvision", x, ref_hue_0_5, 60, tol, 1.0);
    fill_img(x, 3, 4, 5); aug_grayscale(x, 3, 20);
    test_close("grayscale vs torchvision (0.299 weights)", x, ref_gray, 60, tol, 1.0);

    float xb[216], tb[72 + 9 + 7], k[7];
    fill_img(xb, 3, 8, 9); aug_gauss_kernel(k, 5, 1.3); aug_blur(xb, 3, 8, 9, k, 5, tb);
    test_close("gaussian blur 5 taps sigma 1.3 vs torchvision (reflect padding)", xb, ref_blur_5_1_3, 216, tol, 1.0);
    fill_img(xb, 3, 8, 9); aug_gauss_kernel(k, 7, 0.6); aug_blur(xb, 3, 8, 9, k, 7, tb);
    test_close("gaussian blur 7 taps sigma 0.6 vs torchvision", xb, ref_blur_7_0_6, 216, tol, 1.0);

    /* Known answers. */
    float px[3] = {1, 0, 0}, want[3];
    aug_hue(px, 3, 1, 1.0f / 3);
    want[0] = 0; want[1] = 1; want[2] = 0;
    test_close("hue +1/3 turns red into green", px, want, 3, 1e-6, 1.0);
    px[0] = 1; px[1] = 0; px[2] = 0;
    aug_hue(px, 3, 1, -1.0f / 3);
    want[0] = 0; want[1] = 0; want[2] = 1;
    test_close("hue -1/3 turns red into blue", px, want, 3, 1e-6, 1.0);
    px[0] = 1; px[1] = 1; px[2] = 0;
    aug_hue(px, 3, 1, 0.5f);
    want[0] = 0; want[1] = 0; want[2] = 1;
    test_close("hue +1/2 turns yellow into blue", px, want, 3, 1e-6, 1.0);
    float g[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};   /* pixels red, green, blue as planes */
    aug_grayscale(g, 3, 3);
    float gw[9] = {0.299f, 0.587f, 0.114f, 0.299f, 0.587f, 0.114f, 0.299f, 0.587f, 0.114f};
    test_close("grayscale weights 0.299 0.587 0.114 on pure red, green, blue", g, gw, 9, 1e-7, 1.0);

    float kern[23];
    double worst = 0;
    int sym = 1;
    for (int n = 1; n <= 23; n += 2)
        for (double s = 0.1; s <= 2.05; s += 0.3) {
            aug_gauss_kernel(kern, n, s);
            double sum = 0;
            for (int i = 0; i < n; i++) sum += kern[i];
            worst = fmax(worst, fabs(sum - 1));
            for (int i = 0; i < n; i++) sym &= kern[i] == kern[n - 1 - i] && kern[i] <= kern[n / 2];
        }
    test_check(worst < 1e-6 && sym, "gaussian kernels sum to 1 (worst %.2g), symmetric, peak in the middle", worst);
    aug_gauss_kernel(kern, 3, 1.0);
    double e = exp(-0.5), want3[3] = {e / (1 + 2 * e), 1 / (1 + 2 * e), e / (1 + 2 * e)};
    test_check(fabs(kern[0] - want3[0]) < 1e-7 && fabs(kern[1] - want3[1]) < 1e-7,
               "gaussian 3 taps sigma 1 = (e^-1/2, 1, e^-1/2) / (1 + 2 e^-1/2)");
    test_check(aug_blur_taps(64) == 7 && aug_blur_taps(96) == 9 && aug_blur_taps(224) == 23,
               "blur kernel 10%% of the side made odd: 64 -> %d, 96 -> %d, 224 -> %d", aug_blur_taps(64),
               aug_blur_taps(96), aug_blur_taps(224));

    float f[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, fw[12] = {3, 2, 1, 6, 5, 4, 9, 8, 7, 12, 11, 10};
    aug_hflip(f, 2, 2, 3);
    test_close("horizontal flip of 2 x 2 x 3", f, fw, 12, 0, 1.0);
}

/* Crop boxes: inside the image, area and aspect in range, and the same distribution as torchvision's
 * RandomResizedCrop.get_params (100000 torch draws: 64x64 mean area 0.48378, sd 0.23706;
 * 48x96 mean area 0.30875, sd 0.14079; mean log aspect -0.00011 and 0.03296). */
static void test_crop_boxes(void)
{
    struct { int h, w; double mean, sd, mlr; } c[] = {{64, 64, 0.48378, 0.23706, -0.00011}, {48, 96, 0.30875, 0.14079, 0.03296}};
    for (int k = 0; k < 2; k++) {
        util_rng r;
        util_rng_seed(&r, 7 + k);
        const int n = 50000;
        double s = 0, s2 = 0, slr = 0;
        long outside = 0, bad_area = 0, bad_ratio = 0;
        for (int i = 0; i < n; i++) {
            int b[4];
            aug_crop_box(&r, c[k].h, c[k].w, 0.08, 1.0, 0.75, 4.0 / 3.0, b);
            if (b[0] < 0 || b[1] < 0 || b[2] < 1 || b[3] < 1 || b[0] + b[2] > c[k].h || b[1] + b[3] > c[k].w) outside++;
            double a = (double)b[2] * b[3] / (c[k].h * c[k].w), ar = (double)b[3] / b[2];
            /* rounding a side to whole pixels moves area and aspect a little past the bounds */
            if (a < 0.08 * 0.9 || a > 1.0) bad_area++;
            if (ar < 0.75 * 0.95 || ar > 4.0 / 3.0 / 0.95) bad_ratio++;
            s += a; s2 += a * a; slr += log(ar);
        }
        double mean = s / n, sd = sqrt(s2 / n - mean * mean), mlr = slr / n;
        test_check(outside == 0 && bad_area == 0 && bad_ratio == 0,
                   "crop boxes %dx%d: %ld outside, %ld area and %ld aspect out of range in %d draws", c[k].w, c[k].h,
                   outside, bad_area, bad_ratio, n);
        /* standard errors of the two estimates are about 0.0011 (ours) and 0.0008 (torch): 0.006 is > 4 sigma */
        test_check(fabs(mean - c[k].mean) < 0.006 && fabs(sd - c[k].sd) < 0.006 && fabs(mlr - c[k].mlr) < 0.006,
                   "crop boxes %dx%d: mean area %.4f sd %.4f, mean log aspect %.4f (torchvision %.4f, %.4f, %.4f)",
                   c[k].w, c[k].h, mean, sd, mlr, c[k].mean, c[k].sd, c[k].mlr);
    }
}

static void test_simclr_identity(void)
{
    enum { C = 3, H = 16, W = 16 };
    float src[C * H * W], dst[C * H * W], ref[C * H * W];
    fill_img(src, C, H, W);
    aug_simclr_opts o;
    aug_simclr_default(&o, 16, 1.0);
    o.scale_lo = o.scale_hi = 1.0;
    o.ratio_lo = o.ratio_hi = 1.0;
    o.flip_p = o.jitter_p = o.gray_p = o.blur_p = 0;
    aug_work ws = {0};
    struct util_err err;
    util_rng r;
    util_rng_seed(&r, 3);
    int ok = 1;
    for (int f = 1; f <= 2; f++) {
        o.interp = (enum img_filter)f;
        for (int i = 0; i < 20; i++) {
            aug_simclr(dst, src, C, H, W, &o, &r, &ws, NULL, &err);
            ok &= memcmp(dst, src, sizeof src) == 0;
        }
    }
    test_check(ok, "simclr with every probability 0 and a full-image crop is the identity (bilinear, bicubic)");
    o.flip_p = 1;
    aug_simclr(dst, src, C, H, W, &o, &r, &ws, NULL, &err);
    memcpy(ref, src, sizeof ref);
    aug_hflip(ref, C, H, W);
    test_check(memcmp(dst, ref, sizeof ref) == 0, "simclr with flip probability 1 flips every view");
    o.flip_p = 0;
    o.gray_p = 1;
    aug_simclr(dst, src, C, H, W, &o, &r, &ws, NULL, &err);
    int gray = 1;
    for (int i = 0; i < H * W; i++) gray &= dst[i] == dst[H * W + i] && dst[i] == dst[2 * H * W + i];
    test_check(gray, "simclr with grayscale probability 1 gives three equal planes");

    /* Default policy: values stay in [0, 1], every branch is taken at about its probability. */
    aug_simclr_default(&o, 12, 1.0);
    aug_trace tr;
    int n = 4000, nf = 0, nj = 0, ng = 0, nb = 0, out_of_range = 0, order_first[4] = {0};
    for (int i = 0; i < n; i++) {
        aug_simclr(dst, src, C, H, W, &o, &r, &ws, &tr, &err);
        for (int k = 0; k < C * 12 * 12; k++) out_of_range += !(dst[k] >= 0 && dst[k] <= 1);
        nf += tr.flip; nj += tr.jitter; ng += tr.gray; nb += tr.blur;
        if (tr.jitter) order_first[tr.order[0]]++;
        if (tr.blur && (tr.sigma < 0.1f || tr.sigma > 2.0f)) out_of_range++;
        if (tr.jitter && (tr.b < 0.2f || tr.b > 1.8f || fabsf(tr.h) > 0.2f)) out_of_range++;
    }
    /* binomial sd at n = 4000 is <= 0.008: 0.04 is 5 sd */
    test_check(out_of_range == 0 && fabs(nf / (double)n - 0.5) < 0.04 && fabs(nj / (double)n - 0.8) < 0.04 &&
               fabs(ng / (double)n - 0.2) < 0.04 && fabs(nb / (double)n - 0.5) < 0.04,
               "simclr default: flip %.3f jitter %.3f gray %.3f blur %.3f (want 0.5 0.8 0.2 0.5), %d values or "
               "factors out of range", nf / (double)n, nj / (double)n, ng / (double)n, nb / (double)n, out_of_range);
    int spread = 1;
    for (int k = 0; k < 4; k++) spread &= fabs(order_first[k] / (double)nj - 0.25) < 0.04;
    test_check(spread, "colour jitter order is random: each op first in %.3f %.3f %.3f %.3f of jitters",
               order_first[0] / (double)nj, order_first[1] / (double)nj, order_first[2] / (double)nj,
               order_first[3] / (double)nj);
    aug_work_free(&ws);
}

static void test_spec_ops(void)
{
    enum { C = 2, F = 20, T = 30 };
    float x[C * F * T], y[C * F * T], tmp[T];
    aug_spec_opts o;
    aug_spec_default(&o);
    util_rng r;
    util_rng_seed(&r, 11);
    /* identity */
    o.freq_masks = o.time_masks = 0;
    fill_img(x, C, F, T);
    memcpy(y, x, sizeof x);
    aug_spec(x, C, F, T, &o, &r, tmp);
    test_check(memcmp(x, y, sizeof x) == 0, "spec with no masks, shift or gain is the identity");

    /* mask widths: a zero record, masks filled with 1 */
    o.fill = AUG_FILL_VALUE;
    o.fill_value = 1;
    int seen[F + 1] = {0}, over = 0, bad_shape = 0;
    for (int axis = 0; axis < 2; axis++) {
        o.freq_masks = axis == 0;
        o.time_masks = axis == 1;
        o.freq_width = 7; o.freq_frac = 0;
        o.time_width = 0.2; o.time_frac = 1;   /* 20 % of 30 = 6 frames */
        int wmax = axis == 0 ? 7 : 6;
        for (int i = 0; i < 3000; i++) {
            memset(x, 0, sizeof x);
            aug_spec(x, C, F, T, &o, &r, tmp);
            int width = 0;
            for (int j = 0; j < (axis ? T : F); j++) width += x[axis ? j : j * T] == 1;
            /* a mask covers whole rows (or columns), on every channel */
            for (int k = 0; k < C * F * T; k++) {
                int y_ = (k / T) % F, t_ = k % T;
                if (x[k] != x[(axis ? t_ : y_ * T)]) bad_shape++;
            }
            if (width > wmax) over++;
            if (axis == 0) seen[width]++;
        }
    }
    int all = 1;
    for (int w = 0; w <= 7; w++) all &= seen[w] > 0;
    test_check(over == 0 && bad_shape == 0 && all, "spec masks: widths within bounds (%d over), whole rows/columns "
               "(%d stray), every width 0..7 drawn", over, bad_shape);

    /* shift: roll and fill */
    float row[5] = {1, 2, 3, 4, 5}, wroll[5] = {4, 5, 1, 2, 3}, wfill[5] = {9, 9, 1, 2, 3}, t5[5];
    aug_shift(row, 1, 1, 5, 2, 1, 0, t5);
    test_close("time shift +2 circular", row, wroll, 5, 0, 1.0);
    float row2[5] = {1, 2, 3, 4, 5};
    aug_shift(row2, 1, 1, 5, 2, 0, 9, t5);
    test_close("time shift +2 filled", row2, wfill, 5, 0, 1.0);

    /* gain in the ln domain adds g ln(10)/10, |g| <= 6 dB */
    aug_spec_default(&o);
    o.freq_masks = o.time_masks = 0;
    o.gain_db = 6;
    int okg = 1;
    for (int i = 0; i < 200; i++) {
        fill_img(x, C, F, T);
        aug_spec(x, C, F, T, &o, &r, tmp);
        fill_img(y, C, F, T);
        double d0 = x[0] - y[0];
        for (int k = 0; k < C * F * T; k++) okg &= fabs((x[k] - y[k]) - d0) < 1e-5;
        okg &= fabs(d0) <= 6 * log(10.0) / 10 + 1e-6;
    }
    test_check(okg, "gain (ln values): one offset per view within +-6 dB x ln(10)/10");

    /* Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)) */
    for (int k = 0; k < 2; k++) {
        double a = k ? 0.2 : 2.0, s = 0, s2 = 0;
        int n = 40000, bad = 0;
        for (int i = 0; i < n; i++) {
            double b = aug_beta(&r, a);
            bad += !(b >= 0 && b <= 1);
            s += b; s2 += b * b;
        }
        double m = s / n, v = s2 / n - m * m, wv = 1 / (4 * (2 * a + 1));
        /* sd of the mean <= 0.0025; of the variance about 0.001 */
        test_check(bad == 0 && fabs(m - 0.5) < 0.01 && fabs(v - wv) < 0.006,
                   "mixup Beta(%.1f, %.1f): mean %.4f var %.4f (want 0.5, %.4f)", a, a, m, v, wv);
    }
}

/* ---- stream engine ---- */

typedef struct {
    tsz_rec rec;
    uint8_t *data;
    size_t bytes;
} recd;

typedef struct {
    recd *r;
    int n;
    int64_t declared;
    tsz_attrs attrs;
} stream;

static void stream_free(stream *s)
{
    for (int i = 0; i < s->n; i++) free(s->r[i].data);
    free(s->r);
    tsz_attrs_free(&s->attrs);
    memset(s, 0, sizeof *s);
}

static int read_all(const char *path, stream *s)
{
    struct util_err err;
    memset(s, 0, sizeof *s);
    tsz_attrs_init(&s->attrs);
    tsz_reader *rd = tsz_reader_open(path, &err);
    if (!rd) { printf("  %s\n", err.msg); return -1; }
    s->declared = tsz_reader_declared(rd);
    tsz_attrs_copy(&s->attrs, tsz_reader_attrs(rd));
    int cap = 0, rc;
    tsz_rec rec;
    while ((rc = tsz_next(rd, &rec, &err)) == 1) {
        if (s->n == cap) { cap = cap ? 2 * cap : 64; s->r = realloc(s->r, cap * sizeof *s->r); }
        recd *d = &s->r[s->n++];
        d->rec = rec;
        d->bytes = tsz_rec_bytes(&rec);
        d->data = malloc(d->bytes ? d->bytes : 1);
        tsz_read_data(rd, d->data, d->bytes, &err);
    }
    tsz_reader_close(rd);
    if (rc < 0) { printf("  %s\n", err.msg); return -1; }
    return 0;
}

static int same_rec(const recd *a, const recd *b)
{
    return strcmp(a->rec.name, b->rec.name) == 0 && a->rec.label == b->rec.label && a->rec.fold == b->rec.fold &&
           a->rec.dtype == b->rec.dtype && a->rec.ndim == b->rec.ndim &&
           memcmp(a->rec.shape, b->rec.shape, sizeof a->rec.shape) == 0 && a->bytes == b->bytes &&
           memcmp(a->data, b->data, a->bytes) == 0;
}

/* Records [from, from + n) of a equal records [0, n) of b. */
static int same_range(const stream *a, int from, const stream *b)
{
    if (a->n - from != b->n) return 0;
    for (int i = 0; i < b->n; i++)
        if (!same_rec(&a->r[from + i], &b->r[i])) return 0;
    return 1;
}

/* N images 3 x 20 x 24 (u8 or f32), labels i % 5, folds 1 + i % 3; spectrograms 2 x 16 x 40 when spec. */
static void make_input(const char *path, int n, int kind)
{
    struct util_err err;
    tsz_attrs a;
    tsz_attrs_init(&a);
    char *cls[5] = {"a", "b", "c", "d", "e"};
    tsz_attrs_set_classes(&a, cls, 5);
    tsz_writer *w = tsz_writer_open(path, &a, n, NULL, &err);
    int64_t shape[3] = {3, 20, 24};
    if (kind == 2) { shape[0] = 2; shape[1] = 16; shape[2] = 40; }
    size_t numel = (size_t)shape[0] * shape[1] * shape[2];
    uint8_t *u = malloc(numel);
    float *f = malloc(numel * sizeof *f);
    for (int i = 0; i < n; i++) {
        for (size_t k = 0; k < numel; k++) {
            u[k] = (uint8_t)((k * 7 + i * 31 + (k / 24) * 5) % 256);
            f[k] = kind == 2 ? (float)sin(0.1 * k + i) - 3.0f : u[k] / 255.0f;
        }
        tsz_rec rec;
        char name[32];
        snprintf(name, sizeof name, "img%02d", i);
        tsz_rec_init(&rec, name, kind == 0 ? TSZ_U8 : TSZ_F32, 3, shape);
        rec.label = i % 5;
        rec.fold = 1 + i % 3;
        tsz_write(w, &rec, kind == 0 ? (void *)u : (void *)f, &err);
    }
    tsz_writer_finish(w, &err);
    tsz_writer_close(w);
    tsz_attrs_free(&a);
    free(u);
    free(f);
}

/* Run aug_stream on in_path into out_path and read the result.  Returns aug_stream's status. */
static int run(const aug_cfg *c, const char *in_path, const char *out_path, stream *s, struct util_err *err)
{
    tsz_reader *rd = tsz_reader_open(in_path, err);
    if (!rd) return -1;
    tsz_attrs a;
    tsz_attrs_init(&a);
    tsz_attrs_copy(&a, tsz_reader_attrs(rd));
    int rc = aug_stream(c, rd, out_path, &a, NULL, err);
    tsz_reader_close(rd);
    tsz_attrs_free(&a);
    if (rc == 0 && s) rc = read_all(out_path, s);
    return rc;
}

static void test_stream(void)
{
    const int N = 37;
    make_input("in_u8.tsz", N, 0);
    make_input("in_f32.tsz", N, 1);
    make_input("in_spec.tsz", N, 2);
    struct util_err err = {{0}};
    aug_cfg c;
    aug_cfg_default(&c);
    c.policy = AUG_SIMCLR;
    aug_simclr_default(&c.simclr, 16, 1.0);
    c.views = 2;
    c.seed = 5;
    c.threads = 1;
    stream s1, s2, s3, in;
    read_all("in_u8.tsz", &in);

    int rc = run(&c, "in_u8.tsz", "o1.tsz", &s1, &err);
    int pairs = rc == 0 && s1.n == 2 * N && s1.declared == 2 * N, differ = 0;
    for (int i = 0; pairs && i < N; i++) {
        const recd *a = &s1.r[2 * i], *b = &s1.r[2 * i + 1];
        pairs &= strcmp(a->rec.name, in.r[i].rec.name) == 0 && strcmp(b->rec.name, a->rec.name) == 0 &&
                 a->rec.label == in.r[i].rec.label && b->rec.label == a->rec.label && b->rec.fold == a->rec.fold &&
                 a->rec.dtype == TSZ_F32 && a->rec.shape[0] == 3 && a->rec.shape[1] == 16 && a->rec.shape[2] == 16;
        differ += memcmp(a->data, b->data, a->bytes) != 0;
    }
    test_check(pairs, "--views 2: %d records (want %d), pairs share name, label and fold%s%s", s1.n, 2 * N,
               rc ? ": " : "", rc ? err.msg : "");
    test_check(differ == N, "--views 2: the two views of a record differ (%d of %d)", differ, N);

    /* thread count and batch size do not change a byte */
    int same = 1;
    int th[3] = {2, 3, 2}, bt[3] = {0, 1, 7};
    for (int k = 0; k < 3; k++) {
        c.threads = th[k];
        c.batch = bt[k];
        run(&c, "in_u8.tsz", "o2.tsz", &s2, &err);
        same &= same_range(&s1, 0, &s2);
        stream_free(&s2);
    }
    test_check(same, "simclr output identical for 1, 2, 3 threads and batches of 1, 7 and default");

    /* u8 output is round(255 x) of the f32 output; f32 [0,1] input gives the same views as u8 input */
    c.out_u8 = 1;
    run(&c, "in_u8.tsz", "o2.tsz", &s2, &err);
    int u8ok = s2.n == s1.n, worst = 0;
    for (int i = 0; u8ok && i < s1.n; i++) {
        const float *f = (const float *)s1.r[i].data;
        for (size_t k = 0; k < s2.r[i].bytes; k++) {
            int want = (int)(fminf(fmaxf(f[k], 0), 1) * 255.0f + 0.5f), d = abs(want - s2.r[i].data[k]);
            if (d > worst) worst = d;
        }
        u8ok &= s2.r[i].rec.dtype == TSZ_U8;
    }
    test_check(u8ok && worst == 0, "--u8 output is round(255 x) of the f32 views (max diff %d)", worst);
    stream_free(&s2);
    c.out_u8 = 0;
    run(&c, "in_f32.tsz", "o2.tsz", &s2, &err);
    double dmax = 0;
    for (int i = 0; i < s1.n && i < s2.n; i++)
        for (size_t k = 0; k < s1.r[i].bytes / 4; k++)
            dmax = fmax(dmax, fabs(((float *)s1.r[i].data)[k] - ((float *)s2.r[i].data)[k]));
    test_check(s2.n == s1.n && dmax < 1e-6, "f32 input in [0,1] gives the views of the u8 input (max diff %.2g)", dmax);
    stream_free(&s2);

    /* f32 input normalised by img2tensor --mean/--std (attributes): normalisation undone first */
    {
        tsz_reader *rd = tsz_reader_open("in_f32.tsz", &err);
        tsz_attrs a;
        tsz_attrs_init(&a);
        tsz_attrs_copy(&a, tsz_reader_attrs(rd));
        tsz_attrs_set(&a, "mean", "0.485,0.456,0.406");
        tsz_attrs_set(&a, "std", "0.229,0.224,0.225");
        const float m[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
        tsz_writer *w = tsz_writer_open("in_norm.tsz", &a, N, NULL, &err);
        tsz_rec rec;
        void *buf = NULL;
        size_t cap = 0;
        while (tsz_read(rd, &rec, &buf, &cap, &err) == 1) {
            img_normalize(buf, 3, 20 * 24, m, sd);
            tsz_write(w, &rec, buf, &err);
        }
        tsz_writer_finish(w, &err);
        tsz_writer_close(w);
        tsz_reader_close(rd);
        tsz_attrs_free(&a);
        free(buf);
        stream sn;
        rc = run(&c, "in_norm.tsz", "o2.tsz", &sn, &err);
        double dn = rc == 0 && sn.n == s1.n ? 0 : 1;
        for (int i = 0; dn < 1 && i < s1.n; i++)
            for (size_t k = 0; k < s1.r[i].bytes / 4; k++)
                dn = fmax(dn, fabs(((float *)s1.r[i].data)[k] - ((float *)sn.r[i].data)[k]));
        /* (x - m) / s * s + m returns x within a few ulps; the colour ops can amplify that a little */
        test_check(dn < 1e-4 && !tsz_attrs_get(&sn.attrs, "mean"),
                   "normalised f32 input (mean/std attributes) gives the same views (max diff %.2g), no mean attribute out", dn);
        stream_free(&sn);
    }

    /* epochs: E x N x views records, the header says so, each record once per epoch, fresh order */
    c.epochs = 3;
    c.shuffle = 1;
    c.threads = 2;
    c.batch = 5;
    rc = run(&c, "in_u8.tsz", "o3.tsz", &s3, &err);
    int count_ok = rc == 0 && s3.n == 3 * N * 2 && s3.declared == 3 * N * 2;
    int once = 1, orders_differ = 0, first_epoch_shuffled = 0;
    for (int e = 0; count_ok && e < 3; e++) {
        int seen[64] = {0};
        for (int i = 0; i < N; i++) {
            const recd *a = &s3.r[(e * N + i) * 2], *b = a + 1;
            int idx = atoi(a->rec.name + 3);
            once &= strcmp(a->rec.name, b->rec.name) == 0 && idx >= 0 && idx < N;
            if (idx >= 0 && idx < N) seen[idx]++;
            if (e == 0 && idx != i) first_epoch_shuffled = 1;
            if (e > 0 && strcmp(a->rec.name, s3.r[i * 2].rec.name) != 0) orders_differ = 1;
        }
        for (int i = 0; i < N; i++) once &= seen[i] == 1;
    }
    test_check(count_ok, "--epochs 3 --views 2: %d records, header declares %lld (want %d)%s%s", s3.n,
               (long long)s3.declared, 3 * N * 2, rc ? ": " : "", rc ? err.msg : "");
    test_check(once && first_epoch_shuffled && orders_differ,
               "--epochs 3 --shuffle: every record once per epoch, shuffled, a new order each epoch");

    /* --start K continues exactly where the full run would be */
    int starts[] = {0, 1, 2, 73, 74, 75, 150, 221, 222}, start_ok = 1;
    for (size_t k = 0; k < sizeof starts / sizeof *starts; k++) {
        c.start = starts[k];
        c.threads = k % 2 ? 1 : 2;
        stream s4;
        if (run(&c, "in_u8.tsz", "o4.tsz", &s4, &err) < 0) { start_ok = 0; printf("  %s\n", err.msg); continue; }
        if (!same_range(&s3, starts[k], &s4) || s4.declared != 3 * N * 2 - starts[k]) {
            start_ok = 0;
            printf("  --start %d: %d records, declared %lld\n", starts[k], s4.n, (long long)s4.declared);
        }
        stream_free(&s4);
    }
    test_check(start_ok, "--start K (0, 1, 2, 73, 74, 75, 150, 221, 222) equals the full run from record K");
    /* the same without holding the input (one epoch, input order): records are skipped, not computed */
    {
        aug_cfg cs = c;
        cs.epochs = 1;
        cs.shuffle = 0;
        cs.start = 0;
        stream full, part;
        run(&cs, "in_u8.tsz", "o4.tsz", &full, &err);
        int ok = full.n == 2 * N;
        int ks[] = {1, 2, 9, 73, 74};
        for (size_t k = 0; k < sizeof ks / sizeof *ks; k++) {
            cs.start = ks[k];
            cs.batch = 3;
            if (run(&cs, "in_u8.tsz", "o4.tsz", &part, &err) < 0) { ok = 0; printf("  %s\n", err.msg); continue; }
            if (!same_range(&full, ks[k], &part) || part.declared != 2 * N - ks[k]) {
                ok = 0;
                printf("  --start %d: %d records, declared %lld\n", ks[k], part.n, (long long)part.declared);
            }
            stream_free(&part);
        }
        cs.start = 75;
        rc = run(&cs, "in_u8.tsz", "o4.tsz", NULL, &err);
        if (rc == 0 || !strstr(err.msg, "beyond")) { ok = 0; printf("  --start 75: %s\n", rc ? err.msg : "accepted"); }
        test_check(ok, "--start K while streaming (one epoch, input order): equals the full run from K; K > total fails");
        stream_free(&full);
    }
    c.start = 223;
    rc = run(&c, "in_u8.tsz", "o4.tsz", NULL, &err);
    test_check(rc < 0 && strstr(err.msg, "beyond"), "--start past the end: '%s'", rc < 0 ? err.msg : "accepted");
    c.start = 0;
    c.epochs = 1;
    c.shuffle = 0;

    /* policy none: records copied, in order, views repeated */
    c.policy = AUG_NONE;
    c.views = 2;
    c.epochs = 2;
    stream s5;
    rc = run(&c, "in_u8.tsz", "o5.tsz", &s5, &err);
    int none_ok = rc == 0 && s5.n == 4 * N;
    for (int i = 0; none_ok && i < 4 * N; i++) none_ok &= same_rec(&s5.r[i], &in.r[(i / 2) % N]);
    test_check(none_ok, "--policy none --views 2 --epochs 2 (no shuffle): each record copied twice, twice over");
    stream_free(&s5);

    /* spectrograms with mixup: a soft-label record after each view */
    stream sp;
    c.policy = AUG_SPEC;
    c.views = 2;
    c.epochs = 1;
    c.spec.mixup_alpha = 0.4;
    c.spec.gain_db = 3;
    c.spec.shift = 4;
    rc = run(&c, "in_spec.tsz", "o6.tsz", &sp, &err);
    int soft_ok = rc == 0 && sp.n == 4 * N && sp.declared == 4 * N && tsz_attrs_get(&sp.attrs, "soft_labels") &&
                  strcmp(tsz_attrs_get(&sp.attrs, "soft_labels"), "1") == 0, mixed = 0;
    for (int i = 0; soft_ok && i < 2 * N; i++) {
        const recd *v = &sp.r[2 * i], *s = &sp.r[2 * i + 1];
        char want[300];
        snprintf(want, sizeof want, "%s#soft", v->rec.name);
        soft_ok &= strcmp(s->rec.name, want) == 0 && s->rec.ndim == 1 && s->rec.shape[0] == 5 && s->rec.dtype == TSZ_F32 &&
                   v->rec.label == s->rec.label;
        const float *p = (const float *)s->data;
        double sum = 0;
        for (int k = 0; k < 5; k++) { sum += p[k]; soft_ok &= p[k] >= 0; }
        soft_ok &= fabs(sum - 1) < 1e-6 && p[v->rec.label] > 0;
        mixed += p[v->rec.label] < 1;
    }
    test_check(soft_ok && mixed > N, "--mixup 0.4: %d records, each view followed by '<name>#soft' summing to 1 "
               "(%d of %d views mixed)%s%s", sp.n, mixed, 2 * N, rc ? ": " : "", rc ? err.msg : "");
    stream_free(&sp);
    c.spec.mixup_p = 0;
    c.spec.gain_db = 0;
    c.spec.shift = 0;
    c.spec.freq_masks = c.spec.time_masks = 0;
    stream in_spec;
    read_all("in_spec.tsz", &in_spec);
    rc = run(&c, "in_spec.tsz", "o6.tsz", &sp, &err);
    int id_ok = rc == 0 && sp.n == 4 * N;
    for (int i = 0; id_ok && i < 2 * N; i++) {
        id_ok &= same_rec(&sp.r[2 * i], &in_spec.r[i / 2]);
        const float *p = (const float *)sp.r[2 * i + 1].data;
        for (int k = 0; k < 5; k++) id_ok &= p[k] == (k == sp.r[2 * i].rec.label ? 1.0f : 0.0f);
    }
    test_check(id_ok, "spec with every operation off and mixup probability 0: records unchanged, one-hot soft labels");
    stream_free(&sp);
    stream_free(&in_spec);

    /* bad input is reported with its record, and a failed run leaves no output file */
    {
        tsz_writer *w = tsz_writer_open("bad.tsz", NULL, -1, NULL, &err);
        uint8_t px[3 * 20 * 24] = {0};
        for (int i = 0; i < 30; i++) {
            int64_t shape[3] = {i == 20 ? 2 : 3, 20, 24};
            tsz_rec rec;
            tsz_rec_init(&rec, i == 20 ? "odd" : "fine", TSZ_U8, 3, shape);
            tsz_write(w, &rec, px, &err);
        }
        tsz_writer_finish(w, &err);
        tsz_writer_close(w);
    }
    aug_cfg_default(&c);
    c.policy = AUG_SIMCLR;
    c.simclr.size = 8;
    c.batch = 4;
    unlink("o7.tsz");
    rc = run(&c, "bad.tsz", "o7.tsz", NULL, &err);
    test_check(rc < 0 && strstr(err.msg, "bad.tsz: record 20 (odd): shape 2x20x24 is not an image"),
               "a 2-channel record in an image stream: '%s'", rc < 0 ? err.msg : "accepted");
    test_check(access("o7.tsz", F_OK) != 0, "the failed run (after writing 20 records) left no output file");
    c.policy = AUG_SPEC;
    c.spec.mixup_alpha = 1;
    c.num_classes = 3;   /* labels go up to 4 */
    rc = run(&c, "in_spec.tsz", "o7.tsz", NULL, &err);
    test_check(rc < 0 && strstr(err.msg, "record 3 (img03): label 3 outside the 3 classes"),
               "mixup with a label beyond --num-classes: '%s'", rc < 0 ? err.msg : "accepted");
    stream_free(&s1);
    stream_free(&s3);
    stream_free(&in);
}

int main(void)
{
    test_colour_ops();
    test_crop_boxes();
    test_simclr_identity();
    test_spec_ops();
    test_stream();
    return test_exit();
}
