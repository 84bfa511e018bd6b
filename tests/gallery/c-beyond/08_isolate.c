// 08_isolate: the article's uts.c with isolate's pipe (Deep dive into Linux
// namespaces): the child waits for the parent's "OK" and dies with it.
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
        if (sethostname("myhostname", strlen("myhostname")) != 0) {
                perror("sethostname");
                exit(1);
        }
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
        pid_t pid = clone(child_exec, child_stack + STACKSIZE, CLONE_NEWUTS | SIGCHLD, &params);
        if (pid < 0) {
                perror("clone");
                exit(1);
        }
        close(params.fd[0]);
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
