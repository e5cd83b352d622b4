/*
 * A profiling device's self-description (see wk_device.h).
 */
#include "worker/agent/wk_device.h"

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

/* /proc/cpuinfo lines read at most: a 1024-thread machine stays bounded. */
#define WK_DEVICE_CPUINFO_LINES 200000
#define WK_DEVICE_OPENCL_MAX    8 /* platforms, and devices per platform */

/* The value after "key<spaces>:" on line, trimmed, or NULL. */
static const char *cpuinfo_value(char *line, const char *key)
{
    size_t n = strlen(key);
    if (strncmp(line, key, n) != 0)
        return NULL;
    char *p = line + n;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p != ':')
        return NULL;
    p++;
    while (*p == ' ')
        p++;
    p[strcspn(p, "\n")] = '\0';
    return p;
}

/* Whether the space-separated flag list holds flag. */
static int has_flag(const char *flags, const char *flag)
{
    size_t n = strlen(flag);
    for (const char *p = flags; (p = strstr(p, flag)) != NULL; p += n)
        if ((p == flags || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
            return 1;
    return 0;
}

/* cpu, isa and cores from /proc/cpuinfo (x86 and ARM spell them differently). */
static void describe_cpu(json_t *d)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f == NULL)
        return;
    char line[4096], cpu[256] = "", flags[4096] = "";
    long phys = 0, cores_per = 0;
    long long seen_ids = 0;
    for (int i = 0; i < WK_DEVICE_CPUINFO_LINES && fgets(line, sizeof(line), f) != NULL; i++) {
        const char *v;
        if (cpu[0] == '\0' && ((v = cpuinfo_value(line, "model name")) != NULL ||
                               (v = cpuinfo_value(line, "Model")) != NULL ||
                               (v = cpuinfo_value(line, "Hardware")) != NULL))
            snprintf(cpu, sizeof(cpu), "%s", v);
        else if (flags[0] == '\0' && ((v = cpuinfo_value(line, "flags")) != NULL ||
                                      (v = cpuinfo_value(line, "Features")) != NULL))
            snprintf(flags, sizeof(flags), "%s", v);
        else if ((v = cpuinfo_value(line, "physical id")) != NULL) {
            long id = strtol(v, NULL, 10);
            if (id >= 0 && id < 63 && !(seen_ids & (1LL << id))) {
                seen_ids |= 1LL << id;
                phys++;
            }
        } else if (cores_per == 0 && (v = cpuinfo_value(line, "cpu cores")) != NULL)
            cores_per = strtol(v, NULL, 10);
    }
    fclose(f);
    if (cpu[0])
        json_object_set_new(d, "cpu", json_string(cpu));
    json_t *isa = json_array();
    /* The names selectors use, from the kernel's flag names. */
    static const char *const map[][2] = {
        {"sse4_2", "sse4.2"}, {"avx", "avx"},         {"avx2", "avx2"},
        {"fma", "fma"},       {"avx512f", "avx512"},  {"avx512_vnni", "avx512vnni"},
        {"amx_tile", "amx"},  {"neon", "neon"},       {"asimd", "neon"},
        {"sve", "sve"},       {"asimddp", "dotprod"},
    };
    for (size_t i = 0; isa != NULL && i < sizeof(map) / sizeof(map[0]); i++) {
        if (!has_flag(flags, map[i][0]))
            continue;
        int dup = 0;
        size_t k;
        json_t *e;
        json_array_foreach (isa, k, e)
            dup |= strcmp(json_string_value(e), map[i][1]) == 0;
        if (!dup)
            json_array_append_new(isa, json_string(map[i][1]));
    }
    json_object_set_new(d, "isa", isa);
    if (phys > 0 && cores_per > 0)
        json_object_set_new(d, "cores", json_integer(phys * cores_per));
}

/* The first line of `cc --version`, the compiler the bundle's Makefile runs. */
static void describe_cc(json_t *d)
{
    FILE *p = popen("cc --version 2>/dev/null", "r");
    if (p == NULL)
        return;
    char line[256] = "";
    if (fgets(line, sizeof(line), p) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0])
            json_object_set_new(d, "cc", json_string(line));
    }
    pclose(p);
}

/* OpenCL through the ICD loader, with the few entry points declared here
 * (no CL headers needed at build time): every platform and its devices. */
typedef int32_t (*cl_get_platforms_fn)(uint32_t, void **, uint32_t *);
typedef int32_t (*cl_get_platform_info_fn)(void *, uint32_t, size_t, void *, size_t *);
typedef int32_t (*cl_get_devices_fn)(void *, uint64_t, uint32_t, void **, uint32_t *);
typedef int32_t (*cl_get_device_info_fn)(void *, uint32_t, size_t, void *, size_t *);
#define WK_CL_PLATFORM_NAME 0x0902
#define WK_CL_DEVICE_NAME   0x102B
#define WK_CL_DEVICE_ALL    0xFFFFFFFFu

static void describe_opencl(json_t *d)
{
    void *lib = dlopen("libOpenCL.so.1", RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL)
        return; /* no loader: no OpenCL, which is fine */
    /* dlsym returns an object pointer; ISO C converts it to a function
     * pointer only through its bytes (the POSIX way). */
    cl_get_platforms_fn get_platforms = NULL;
    cl_get_platform_info_fn platform_info = NULL;
    cl_get_devices_fn get_devices = NULL;
    cl_get_device_info_fn device_info = NULL;
    void *sym[4] = {dlsym(lib, "clGetPlatformIDs"), dlsym(lib, "clGetPlatformInfo"),
                    dlsym(lib, "clGetDeviceIDs"), dlsym(lib, "clGetDeviceInfo")};
    memcpy(&get_platforms, &sym[0], sizeof(get_platforms));
    memcpy(&platform_info, &sym[1], sizeof(platform_info));
    memcpy(&get_devices, &sym[2], sizeof(get_devices));
    memcpy(&device_info, &sym[3], sizeof(device_info));
    json_t *platforms = json_array();
    void *ids[WK_DEVICE_OPENCL_MAX];
    uint32_t n = 0;
    if (platforms != NULL && get_platforms && platform_info && get_devices && device_info &&
        get_platforms(WK_DEVICE_OPENCL_MAX, ids, &n) == 0) {
        for (uint32_t i = 0; i < n && i < WK_DEVICE_OPENCL_MAX; i++) {
            char name[256] = "";
            platform_info(ids[i], WK_CL_PLATFORM_NAME, sizeof(name) - 1, name, NULL);
            json_t *devs = json_array();
            void *dev_ids[WK_DEVICE_OPENCL_MAX];
            uint32_t nd = 0;
            if (get_devices(ids[i], WK_CL_DEVICE_ALL, WK_DEVICE_OPENCL_MAX, dev_ids, &nd) != 0)
                nd = 0;
            for (uint32_t k = 0; devs != NULL && k < nd && k < WK_DEVICE_OPENCL_MAX; k++) {
                char dn[256] = "";
                device_info(dev_ids[k], WK_CL_DEVICE_NAME, sizeof(dn) - 1, dn, NULL);
                json_array_append_new(devs, json_string(dn));
            }
            json_array_append_new(platforms,
                                  json_pack("{s:s, s:o*}", "platform", name, "devices", devs));
        }
    }
    json_object_set_new(d, "opencl", platforms ? platforms : json_array());
    dlclose(lib);
}

enum dp_err wk_device_describe(json_t **out)
{
    json_t *d = json_object();
    *out = NULL;
    if (d == NULL)
        return DP_ENOMEM;
    describe_cpu(d);
    long threads = sysconf(_SC_NPROCESSORS_ONLN);
    if (threads > 0)
        json_object_set_new(d, "threads", json_integer(threads));
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0)
        json_object_set_new(d, "memory_bytes", json_integer((json_int_t)pages * page));
    struct utsname u;
    if (uname(&u) == 0) {
        json_object_set_new(d, "os", json_string(u.sysname));
        json_object_set_new(d, "kernel", json_string(u.release));
        json_object_set_new(d, "arch", json_string(u.machine));
    }
    describe_cc(d);
    describe_opencl(d);
    *out = d;
    return DP_OK;
}

enum dp_err wk_device_labels_parse(const char *list, json_t **out, struct dp_errinfo *ei)
{
    json_t *o = json_object();
    *out = NULL;
    if (o == NULL)
        return DP_ENOMEM;
    const char *p = list ? list : "";
    while (*p != '\0') {
        size_t n = strcspn(p, ",");
        const char *eq = memchr(p, '=', n);
        if (eq == NULL || eq == p || eq + 1 == p + n || n > 130) {
            json_decref(o);
            return dp_errinfo_set(ei, DP_EINVAL,
                                  "--device-labels: '%.*s' is not key=value (k=v,k=v)", (int)n, p);
        }
        char key[65], val[65];
        snprintf(key, sizeof(key), "%.*s", (int)(eq - p), p);
        snprintf(val, sizeof(val), "%.*s", (int)(p + n - eq - 1), eq + 1);
        if (json_object_set_new(o, key, json_string(val)) != 0) {
            json_decref(o);
            return dp_errinfo_set(ei, DP_EINVAL, "--device-labels: '%.*s' is not valid text",
                                  (int)n, p);
        }
        p += n;
        if (*p == ',')
            p++;
    }
    *out = o;
    return DP_OK;
}
