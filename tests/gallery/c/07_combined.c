// 07_combined: the kit's, in the article's C. The article's last section (In the
// end...) gives no code; its calls combined as they are fail in the new user
// namespace at 05's umount of /proc, so this one mounts a fresh proc over it.
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <errno.h>

#define STACKSIZE (1024*1024)

static char child_stack[STACKSIZE];

struct clone_args {
        char **argv;
};

// child_exec is the func that will be executed as the result of clone
static int child_exec(void *stuff)
{
        struct clone_args *args = (struct clone_args *)stuff;
        if (mount("none", "/mytmp", "tmpfs", 0, "") != 0) {
                fprintf(stderr, "failed to mount tmpfs %s\n",
                        strerror(errno));
                exit(-1);
        }
        const char * new_hostname = "myhostname";
        if (sethostname(new_hostname, strlen(new_hostname)) != 0) {
                fprintf(stderr, "failed to set hostname %s\n",
                        strerror(errno));
                exit(-1);
        }
        // In a new user namespace the host's /proc is locked in place
        // (umount fails with EINVAL): mount a fresh proc over it instead.
        if (mount("proc", "/proc", "proc", 0, "") != 0) {
                fprintf(stderr, "failed mount /proc %s\n",
                        strerror(errno));
                exit(-1);
        }
        if (execvp(args->argv[0], args->argv) != 0) {
                fprintf(stderr, "failed to execvp argments %s\n",
                        strerror(errno));
                exit(-1);
        }
        // we should never reach here!
        exit(EXIT_FAILURE);
}

int main(int argc, char **argv)
{
        struct clone_args args;
        args.argv = &argv[1];
        // /mytmp is made by the parent: in a new user namespace the child
        // has no say over the host's files.
        if (mkdir("/mytmp", 0755) != 0 && errno != EEXIST) {
                fprintf(stderr, "failed to mkdir /mytmp %s\n", strerror(errno));
                exit(EXIT_FAILURE);
        }

        int clone_flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER
                          | CLONE_NEWPID | CLONE_NEWNET | SIGCHLD;
        // the result of this call is that our child_exec will be run in another
        // process returning it's pid
        pid_t pid =
            clone(child_exec, child_stack + STACKSIZE, clone_flags, &args);
        if (pid < 0) {
                fprintf(stderr, "clone failed WTF!!!! %s\n", strerror(errno));
                exit(EXIT_FAILURE);
        }
        // lets wait on our child process here before we, the parent, exits
        int status;
        if (waitpid(pid, &status, 0) == -1) {
                fprintf(stderr, "failed to wait pid %d\n", pid);
                exit(EXIT_FAILURE);
        }
        exit(WIFEXITED(status) ? WEXITSTATUS(status) : EXIT_FAILURE);
}
