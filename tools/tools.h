/* tools: subcommands of the raftfs command-line tool. Each returns the exit status. */
#ifndef TOOLS_H
#define TOOLS_H

/* raftfs bench: argv[0] is "bench". */
int tools_bench(int argc, char **argv);

/* raftfs meta: argv[0] is "meta". */
int tools_meta(int argc, char **argv);

/* raftfs group: argv[0] is "group". */
int tools_group(int argc, char **argv);

/* raftfs cluster: argv[0] is "cluster". */
int tools_cluster(int argc, char **argv);

#endif
