/* The kit's steps in C, for `make bench`: what the article's programs cost.

    clone NN CMD [ARGS...]     do what steps/NN_*.py does: the same clone
                               flags, the same work in the child, then execvp
    clone --cost NAME ROUNDS   clone ROUNDS children with only CLONE_NEW<NAME>
                               (or none), each _exit(0) at once, and print
                               the median nanoseconds of clone + waitpid

bench/bench.py compiles it with gcc into a temporary folder at bench time.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define STACKSIZE (1024 * 1024)

static char child_stack[STACKSIZE];

struct step {
    const char *nn;
    int flags;
    int private_root, tmpfs, hostname, umount_proc, mount_proc, mkdir_mytmp;
};

static const struct step STEPS[] = {
    {"00", 0, 0, 0, 0, 0, 0, 0},
    {"01", CLONE_NEWNET, 0, 0, 0, 0, 0, 0},
    {"02", CLONE_NEWNS, 1, 1, 0, 0, 0, 1},
    {"03", CLONE_NEWUTS, 0, 0, 1, 0, 0, 0},
    {"04", CLONE_NEWIPC, 0, 0, 0, 0, 0, 0},
    {"05", CLONE_NEWPID | CLONE_NEWNS, 1, 0, 0, 1, 1, 0},
    {"06", CLONE_NEWUSER, 0, 0, 0, 0, 0, 0},
    {"07", CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID
               | CLONE_NEWNET, 1, 1, 1, 0, 1, 1},
};

static const struct step *chosen;
static char **command;

static void die(const char *what)
{
    fprintf(stderr, "clone: %s failed: %s\n", what, strerror(errno));
    _exit(1);
}

static int child_exec(void *stuff)
{
    (void)stuff;
    if (chosen->private_root && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        die("mount --make-rprivate /");
    if (chosen->tmpfs && mount("none", "/mytmp", "tmpfs", 0, "") != 0)
        die("mount tmpfs on /mytmp");
    if (chosen->hostname && sethostname("myhostname", strlen("myhostname")) != 0)
        die("sethostname");
    if (chosen->umount_proc && umount2("/proc", MNT_DETACH) != 0)
        die("umount /proc");
    if (chosen->mount_proc && mount("proc", "/proc", "proc", 0, "") != 0)
        die("mount proc on /proc");
    execvp(command[0], command);
    die("execvp");
    return 1;
}

static int quit(void *stuff)
{
    (void)stuff;
    _exit(0);
}

static int cmp(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

static int cost(const char *name, int rounds)
{
    static const struct { const char *name; int flag; } NAMES[] = {
        {"none", 0}, {"net", CLONE_NEWNET}, {"mnt", CLONE_NEWNS}, {"uts", CLONE_NEWUTS},
        {"ipc", CLONE_NEWIPC}, {"pid", CLONE_NEWPID}, {"user", CLONE_NEWUSER},
    };
    int flag = -1;
    for (size_t i = 0; i < sizeof NAMES / sizeof *NAMES; i++)
        if (strcmp(NAMES[i].name, name) == 0)
            flag = NAMES[i].flag;
    if (flag < 0 || rounds < 1) {
        fprintf(stderr, "clone: --cost none|net|mnt|uts|ipc|pid|user ROUNDS\n");
        return 2;
    }
    long long *ns = calloc(rounds, sizeof *ns);
    for (int i = 0; i < rounds; i++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        pid_t pid = clone(quit, child_stack + STACKSIZE, flag | SIGCHLD, NULL);
        if (pid == -1)
            die("clone");
        if (waitpid(pid, NULL, 0) == -1)
            die("waitpid");
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ns[i] = (t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
    }
    qsort(ns, rounds, sizeof *ns, cmp);
    printf("%lld\n", ns[rounds / 2]);
    return 0;
}

int main(int argc, char *argv[])
{
    if (argc == 4 && strcmp(argv[1], "--cost") == 0)
        return cost(argv[2], atoi(argv[3]));
    for (size_t i = 0; argc >= 3 && i < sizeof STEPS / sizeof *STEPS; i++)
        if (strcmp(STEPS[i].nn, argv[1]) == 0)
            chosen = &STEPS[i];
    if (!chosen) {
        fprintf(stderr, "usage: clone NN CMD [ARGS...] | clone --cost NAME ROUNDS\n");
        return 2;
    }
    command = argv + 2;
    if (chosen->mkdir_mytmp && mkdir("/mytmp", 0755) != 0 && errno != EEXIST)
        die("mkdir /mytmp");
    pid_t pid = clone(child_exec, child_stack + STACKSIZE, chosen->flags | SIGCHLD, NULL);
    if (pid == -1)
        die("clone");
    int status;
    if (waitpid(pid, &status, 0) == -1)
        die("waitpid");
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
