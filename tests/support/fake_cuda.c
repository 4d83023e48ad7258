/* A stand-in for the NVIDIA driver (libcuda.so.1) and NVRTC (libnvrtc.so.11.2), built by the
   tests with the system C compiler, so that src/ssd_sagemaker/cuda_driver.py reads GPUs through
   its real ctypes calls on a machine without a GPU.
   FAKE_CUDA_GPUS="name|major|minor|MiB;..." lists the GPUs ("" = driver present, no GPU:
   cuInit returns CUDA_ERROR_NO_DEVICE); FAKE_CUDA_INIT_ERROR=N makes cuInit return N;
   FAKE_NVRTC_VERSION="11.2" and FAKE_NVRTC_ARCHS="75,80,86" describe NVRTC. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_GPUS 16
typedef struct { char name[128]; int major, minor; size_t mib; } gpu_t;
static gpu_t gpus[MAX_GPUS];
static int count = -1;

static void parse(void) {
    const char *spec = getenv("FAKE_CUDA_GPUS");
    count = 0;
    if (!spec) return;
    char copy[4096];
    strncpy(copy, spec, sizeof copy - 1);
    copy[sizeof copy - 1] = 0;
    char *save = NULL;
    for (char *item = strtok_r(copy, ";", &save); item && count < MAX_GPUS;
         item = strtok_r(NULL, ";", &save)) {
        gpu_t *g = &gpus[count];
        char *field_save = NULL;
        char *name = strtok_r(item, "|", &field_save);
        char *major = strtok_r(NULL, "|", &field_save);
        char *minor = strtok_r(NULL, "|", &field_save);
        char *mib = strtok_r(NULL, "|", &field_save);
        if (!name || !major || !minor || !mib) continue;
        snprintf(g->name, sizeof g->name, "%s", name);
        g->major = atoi(major);
        g->minor = atoi(minor);
        g->mib = (size_t)atol(mib);
        count++;
    }
}

int cuInit(unsigned flags) {
    (void)flags;
    const char *error = getenv("FAKE_CUDA_INIT_ERROR");
    if (error) return atoi(error);
    parse();
    return count == 0 ? 100 : 0; /* CUDA_ERROR_NO_DEVICE */
}
int cuDriverGetVersion(int *version) { *version = 12040; return 0; }
int cuDeviceGetCount(int *n) { if (count < 0) return 3; *n = count; return 0; }
int cuDeviceGet(int *device, int ordinal) {
    if (ordinal < 0 || ordinal >= count) return 101; /* CUDA_ERROR_INVALID_DEVICE */
    *device = ordinal;
    return 0;
}
int cuDeviceGetName(char *name, int length, int device) {
    snprintf(name, (size_t)length, "%s", gpus[device].name);
    return 0;
}
int cuDeviceGetAttribute(int *value, int attribute, int device) {
    if (attribute == 75) { *value = gpus[device].major; return 0; }
    if (attribute == 76) { *value = gpus[device].minor; return 0; }
    return 1;
}
int cuDeviceTotalMem_v2(size_t *bytes, int device) {
    *bytes = gpus[device].mib * 1024 * 1024;
    return 0;
}

int nvrtcVersion(int *major, int *minor) {
    const char *version = getenv("FAKE_NVRTC_VERSION");
    if (!version) version = "11.2";
    *major = atoi(version);
    const char *dot = strchr(version, '.');
    *minor = dot ? atoi(dot + 1) : 0;
    return 0;
}
static int archs(int *out) {
    const char *list = getenv("FAKE_NVRTC_ARCHS");
    int n = 0;
    if (!list) return 0;
    for (const char *p = list; *p;) {
        int value = atoi(p);
        if (out) out[n] = value;
        n++;
        const char *comma = strchr(p, ',');
        if (!comma) break;
        p = comma + 1;
    }
    return n;
}
int nvrtcGetNumSupportedArchs(int *n) { *n = archs(NULL); return 0; }
int nvrtcGetSupportedArchs(int *out) { archs(out); return 0; }
