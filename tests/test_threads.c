/* Thread safety of the public API: two nst_transfer calls running at once in two threads give the same
 * bytes as the same calls one after the other; so do two objectives evaluated at once; nst_last_error,
 * the image limits and the thread count are per thread. Small model (VGG-19's layers at 1/16 of its
 * widths), small images, few iterations: seconds. POSIX threads; skipped elsewhere. */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#define NST_IMPLEMENTATION
#include "nst.h"
#include "nst_test.h"
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#include <sched.h>
#define HAVE_PTHREAD 1
#endif

static nst_model *model;

static nst_status small_model(nst_model **out) {
    int cin[NST_VGG_CONVS], cout[NST_VGG_CONVS], i;
    size_t k;
    nst_model *m;
    nst_status st;
    nst__rng r;
    for (i = 0; i < NST_VGG_CONVS; i++) {
        cout[i] = nst__vgg_cout[i] / 16;
        cin[i] = i ? cout[i - 1] : 3;
    }
    if ((st = nst__model_alloc(NST_VGG_CONVS, cin, cout, &m)) != NST_OK) return st;
    r.s = 3;
    for (i = 0; i < NST_VGG_CONVS; i++) {
        for (k = 0; k < (size_t)cout[i] * cin[i] * 9; k++) m->w[i][k] = (float)(nst__rng_normal(&r) * sqrt(2.0 / (9.0 * cin[i])));
        for (k = 0; k < (size_t)cout[i]; k++) m->b[i][k] = 0.01f;
    }
    if ((st = nst__model_finish(m)) != NST_OK) { nst_model_free(m); return st; }
    *out = m;
    return NST_OK;
}

static void fill(nst_image *im, int w, int h, unsigned seed) {
    size_t i, n = (size_t)w * h * 3;
    nst_image_alloc(im, w, h, 3);
    for (i = 0; im->pixels && i < n; i++) im->pixels[i] = (float)(((i + seed) * 2654435761u) % 1000) / 1000.0f;
}

/* ---- transfers ----------------------------------------------------------------------------------------*/
typedef struct job {
    nst_image content, style, out;
    nst_options o;
    nst_status st;
} job;

static void job_init(job *j, unsigned seed, int threads, nst_optimizer opt) {
    memset(j, 0, sizeof *j);
    fill(&j->content, 48 + (int)seed, 40, seed);
    fill(&j->style, 40, 44, seed * 7 + 1);
    nst_options_init(&j->o);
    j->o.image_size = 48;
    j->o.iterations = 4;
    j->o.lbfgs_history = 3;
    j->o.optimizer = opt;
    j->o.seed = seed;
    j->o.threads = threads;
}
static void job_free(job *j) {
    nst_image_free(&j->content); nst_image_free(&j->style); nst_image_free(&j->out);
}
static void *job_run(void *arg) {
    job *j = (job *)arg;
    j->st = nst_transfer(model, &j->content, &j->style, NULL, 1, &j->o, &j->out);
    return NULL;
}
static int same_image(const nst_image *a, const nst_image *b) {
    return a->pixels && b->pixels && a->width == b->width && a->height == b->height && a->channels == b->channels &&
           memcmp(a->pixels, b->pixels, sizeof(float) * (size_t)a->width * a->height * a->channels) == 0;
}

TEST(two_transfers_at_once_match_one_after_the_other) {
#ifdef HAVE_PTHREAD
    job seq[2], par[2];
    pthread_t t[2];
    int i, threads;
    if (!model) SKIP("no model");
    for (threads = 1; threads <= 2; threads++) {
        for (i = 0; i < 2; i++) {
            job_init(&seq[i], (unsigned)i + 1, threads, i ? NST_OPT_ADAM : NST_OPT_LBFGS);
            job_init(&par[i], (unsigned)i + 1, threads, i ? NST_OPT_ADAM : NST_OPT_LBFGS);
        }
        job_run(&seq[0]);
        job_run(&seq[1]);
        for (i = 0; i < 2; i++) CHECK(pthread_create(&t[i], NULL, job_run, &par[i]) == 0);
        for (i = 0; i < 2; i++) pthread_join(t[i], NULL);
        for (i = 0; i < 2; i++) {
            CHECK(seq[i].st == NST_OK && par[i].st == NST_OK);
            CHECK_MSG(same_image(&seq[i].out, &par[i].out), "transfer %d with %d thread(s) differs when run at once", i,
                      threads);
            job_free(&seq[i]);
            job_free(&par[i]);
        }
    }
#else
    SKIP("no POSIX threads");
#endif
}

/* ---- objectives ---------------------------------------------------------------------------------------*/
typedef struct evaljob {
    nst_objective *obj;
    float *px, *grad;
    nst_losses l;
    nst_status st;
    int reps;
} evaljob;
static void *eval_run(void *arg) {
    evaljob *e = (evaljob *)arg;
    int r;
    for (r = 0; r < e->reps; r++) e->st = nst_objective_eval(e->obj, e->px, &e->l, e->grad);
    return NULL;
}

TEST(two_objectives_evaluated_at_once_match) {
#ifdef HAVE_PTHREAD
    nst_image c[2], s[2];
    nst_options o;
    evaljob seq[2], par[2];
    pthread_t t[2];
    int i;
    size_t n = (size_t)3 * 48 * 40, k;
    if (!model) SKIP("no model");
    nst_options_init(&o);
    o.threads = 2;
    for (i = 0; i < 2; i++) {
        fill(&c[i], 48, 40, 11 + (unsigned)i);
        fill(&s[i], 36, 44, 21 + (unsigned)i);
    }
    for (i = 0; i < 2; i++) {
        evaljob *e[2];
        int j;
        e[0] = &seq[i]; e[1] = &par[i];
        for (j = 0; j < 2; j++) {
            memset(e[j], 0, sizeof *e[j]);
            CHECK_OK(nst_objective_create(model, &c[i], &s[i], NULL, 1, &o, &e[j]->obj));
            e[j]->px = (float *)malloc(n * sizeof(float));
            e[j]->grad = (float *)malloc(n * sizeof(float));
            for (k = 0; k < n; k++) e[j]->px[k] = 255.0f * c[1 - i].pixels[k % (n / 3 * 3)];
            e[j]->reps = 3;
        }
    }
    if (!seq[0].obj || !seq[1].obj || !par[0].obj || !par[1].obj) return;
    eval_run(&seq[0]);
    eval_run(&seq[1]);
    for (i = 0; i < 2; i++) CHECK(pthread_create(&t[i], NULL, eval_run, &par[i]) == 0);
    for (i = 0; i < 2; i++) pthread_join(t[i], NULL);
    for (i = 0; i < 2; i++) {
        CHECK(seq[i].st == NST_OK && par[i].st == NST_OK);
        CHECK(seq[i].l.total == par[i].l.total && seq[i].l.style == par[i].l.style);
        CHECK_MSG(memcmp(seq[i].grad, par[i].grad, n * sizeof(float)) == 0, "objective %d: gradients differ", i);
    }
    for (i = 0; i < 2; i++) {
        nst_objective_free(seq[i].obj); nst_objective_free(par[i].obj);
        free(seq[i].px); free(seq[i].grad); free(par[i].px); free(par[i].grad);
        nst_image_free(&c[i]); nst_image_free(&s[i]);
    }
#else
    SKIP("no POSIX threads");
#endif
}

/* ---- per-thread state ---------------------------------------------------------------------------------*/
#ifdef HAVE_PTHREAD
static int stage;   /* 0 -> 1: the other thread set its error; 1 -> 2: main set its own */
static int other_ok, other_limits_ok, other_threads;
static void wait_for(int s) { while (__atomic_load_n(&stage, __ATOMIC_ACQUIRE) < s) sched_yield(); }
static void *other_thread(void *arg) {
    nst_image im;
    nst_image_limits lim;
    (void)arg;
    nst_set_threads(1);
    memset(&lim, 0, sizeof lim);
    lim.max_pixels = 10;
    nst_image_set_limits(&lim);
    (void)nst_image_load("no-such-file-in-thread-B.png", &im);
    __atomic_store_n(&stage, 1, __ATOMIC_RELEASE);
    wait_for(2);
    other_ok = strstr(nst_last_error(), "thread-B") != NULL && strstr(nst_last_error(), "thread-A") == NULL;
    other_limits_ok = nst_image_alloc(&im, 4, 4, 3) == NST_ERR_LIMIT;   /* 16 pixels > this thread's 10 */
    other_threads = nst_get_threads();
    return NULL;
}
#endif

TEST(errors_limits_and_thread_counts_are_per_thread) {
#ifdef HAVE_PTHREAD
    pthread_t t;
    nst_image im;
    stage = 0;
    nst_set_threads(2);
    CHECK(pthread_create(&t, NULL, other_thread, NULL) == 0);
    wait_for(1);
    (void)nst_image_load("no-such-file-in-thread-A.png", &im);
    __atomic_store_n(&stage, 2, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    CHECK(other_ok);
    CHECK(strstr(nst_last_error(), "thread-A") != NULL && strstr(nst_last_error(), "thread-B") == NULL);
    CHECK(other_limits_ok);
    CHECK_OK(nst_image_alloc(&im, 4, 4, 3));   /* this thread's limits are untouched */
    nst_image_free(&im);
    CHECK(other_threads == 1);
#ifdef _OPENMP
    CHECK(nst_get_threads() == 2);
#endif
    nst_set_threads(0);
#else
    SKIP("no POSIX threads");
#endif
}

int main(int argc, char **argv) {
    nst_test_begin(argc, argv);
    if (small_model(&model) != NST_OK) fprintf(stderr, "model: %s\n", nst_last_error());
    RUN(errors_limits_and_thread_counts_are_per_thread);
    RUN(two_objectives_evaluated_at_once_match);
    RUN(two_transfers_at_once_match_one_after_the_other);
    nst_model_free(model);
    return nst_test_end("test_threads");
}
