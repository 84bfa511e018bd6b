// 09_uid_map: 08 in a user namespace: before it says "OK" the parent maps
// root inside to its own uid and gid outside (Deep dive into Linux namespaces).
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <errno.h>

#define STACKSIZE (1024*1024)

static char child_stack[STACKSIZE];

struct params {
        int fd[2];
        char **argv;
};

static void write_file(pid_t pid, const char *name, const char *text)
{
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/%s", pid, name);
        FILE *f = fopen(path, "w");
        if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
                fprintf(stderr, "write %s to %s failed: %s\n", text, path, strerror(errno));
                exit(1);
        }
}

static int child_exec(void *stuff)
{
        struct params *params = stuff;
        char buf[2];
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
                perror("prctl");
                exit(1);
        }
        close(params->fd[1]);
        if (read(params->fd[0], buf, 2) != 2 || memcmp(buf, "OK", 2) != 0) {
                fprintf(stderr, "the parent ended before it finished setting up\n");
                exit(1);
        }
        close(params->fd[0]);
        execvp(params->argv[0], params->argv);
        perror("execvp");
        exit(1);
}

int main(int argc, char **argv)
{
        struct params params = { .argv = &argv[1] };
        if (pipe(params.fd) != 0) {
                perror("pipe");
                exit(1);
        }
        pid_t pid = clone(child_exec, child_stack + STACKSIZE, CLONE_NEWUSER | SIGCHLD, &params);
        if (pid < 0) {
                perror("clone");
                exit(1);
        }
        close(params.fd[0]);
        char line[64];
        write_file(pid, "setgroups", "deny");
        snprintf(line, sizeof line, "0 %d 1", getuid());
        write_file(pid, "uid_map", line);
        snprintf(line, sizeof line, "0 %d 1", getgid());
        write_file(pid, "gid_map", line);
        if (write(params.fd[1], "OK", 2) != 2) {
                perror("write");
                exit(1);
        }
        close(params.fd[1]);
        int status;
        if (waitpid(pid, &status, 0) == -1) {
                perror("waitpid");
                exit(1);
        }
        exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}
