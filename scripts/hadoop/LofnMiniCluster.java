/*
 * Single-process Hadoop mini cluster for lofn's tests: HDFS (1 NameNode,
 * N DataNodes, WebHDFS on) + YARN (1 ResourceManager, N NodeManagers).
 * No MapReduce, no JobHistoryServer, no timeline service.
 *
 * Compiled and started by start.sh; see README.md beside this file.
 *
 *   java ... LofnMiniCluster WORK_DIR CONF_DIR [key=value ...]
 *
 * key=value pairs go into the Hadoop Configuration, except these, which
 * are read by this launcher (0 = pick a free port):
 *   lofn.nn.port, lofn.nn.http.port, lofn.rm.port, lofn.rm.scheduler.port,
 *   lofn.rm.tracker.port, lofn.rm.admin.port, lofn.rm.webapp.port,
 *   lofn.datanodes (1), lofn.nodemanagers (1), lofn.host (127.0.0.1)
 *
 * Once both clusters are up it writes CONF_DIR/{core,hdfs,yarn,mapred}-site.xml
 * (client configuration, usable as HADOOP_CONF_DIR), CONF_DIR/cluster.env
 * (shell exports) and finally WORK_DIR/ready. SIGTERM/SIGINT stop YARN, then
 * HDFS, then exit 0.
 */

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintWriter;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.StandardCopyOption;
import java.util.LinkedHashMap;
import java.util.Map;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.permission.FsPermission;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import org.apache.hadoop.yarn.api.records.NodeState;
import org.apache.hadoop.yarn.conf.YarnConfiguration;
import org.apache.hadoop.yarn.server.MiniYARNCluster;
import org.apache.hadoop.yarn.server.resourcemanager.ResourceManager;

public class LofnMiniCluster {

  private static int freePort(String host) throws IOException {
    try (ServerSocket s = new ServerSocket()) {
      s.setReuseAddress(true);
      s.bind(new InetSocketAddress(host, 0));
      return s.getLocalPort();
    }
  }

  private static int portOr(Map<String, String> opts, String key, String host)
      throws IOException {
    int p = Integer.parseInt(opts.getOrDefault(key, "0"));
    return p != 0 ? p : freePort(host);
  }

  private static void writeSite(File dir, String name, Map<String, String> props)
      throws IOException {
    Configuration c = new Configuration(false);
    for (Map.Entry<String, String> e : props.entrySet()) {
      c.set(e.getKey(), e.getValue());
    }
    File tmp = new File(dir, name + ".tmp");
    try (OutputStream os = new FileOutputStream(tmp)) {
      c.writeXml(os);
    }
    Files.move(tmp.toPath(), new File(dir, name).toPath(),
        StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
  }

  /**
   * Each finished app leaves a container-log deletion scheduled 3 h ahead in
   * the NodeManager's NonAggregatingLogHandler, whose serviceStop() then
   * waits 10 s for it. The run dir is deleted after stop anyway, so drop
   * those delayed tasks on shutdown. Best effort (reflection).
   */
  private static void dropPendingLogDeletions(MiniYARNCluster yarn, int i) {
    try {
      Object cm = yarn.getNodeManager(i).getNMContext().getContainerManager();
      Object handler = readField(cm, "logHandler");
      Object sched = readField(handler, "sched");
      if (sched instanceof java.util.concurrent.ScheduledThreadPoolExecutor) {
        ((java.util.concurrent.ScheduledThreadPoolExecutor) sched)
            .setExecuteExistingDelayedTasksAfterShutdownPolicy(false);
      }
    } catch (Throwable t) {
      System.err.println("LofnMiniCluster: could not drop log deletions: " + t);
    }
  }

  private static Object readField(Object o, String name) throws Exception {
    for (Class<?> c = o.getClass(); c != null; c = c.getSuperclass()) {
      try {
        java.lang.reflect.Field f = c.getDeclaredField(name);
        f.setAccessible(true);
        return f.get(o);
      } catch (NoSuchFieldException e) {
        // try the superclass
      }
    }
    throw new NoSuchFieldException(o.getClass().getName() + "." + name);
  }

  public static void main(String[] args) {
    try {
      run(args);
    } catch (Throwable t) {
      // Non-daemon server threads would otherwise keep a half-started JVM up.
      System.err.println("LofnMiniCluster: FAILED");
      t.printStackTrace();
      System.exit(1);
    }
  }

  private static void run(String[] args) throws Exception {
    if (args.length < 2) {
      System.err.println("usage: LofnMiniCluster WORK_DIR CONF_DIR [key=value ...]");
      System.exit(2);
    }
    final File work = new File(args[0]).getAbsoluteFile();
    final File confDir = new File(args[1]).getAbsoluteFile();
    work.mkdirs();
    confDir.mkdirs();

    Map<String, String> opts = new LinkedHashMap<>();
    Map<String, String> extra = new LinkedHashMap<>();
    for (int i = 2; i < args.length; i++) {
      String[] kv = args[i].split("=", 2);
      if (kv.length != 2) {
        throw new IllegalArgumentException("expected key=value: " + args[i]);
      }
      (kv[0].startsWith("lofn.") ? opts : extra).put(kv[0], kv[1]);
    }
    final String host = opts.getOrDefault("lofn.host", "127.0.0.1");
    final int dataNodes = Integer.parseInt(opts.getOrDefault("lofn.datanodes", "1"));
    final int nodeManagers = Integer.parseInt(opts.getOrDefault("lofn.nodemanagers", "1"));

    YarnConfiguration conf = new YarnConfiguration();
    // ---- defaults (any of them can be overridden with key=value) ----
    conf.set("hadoop.tmp.dir", new File(work, "tmp").getPath());
    conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, new File(work, "dfs").getPath());
    conf.setBoolean("dfs.webhdfs.enabled", true);
    conf.setBoolean("dfs.permissions.enabled", false);
    conf.setInt("dfs.replication", 1);
    conf.set("dfs.namenode.rpc-bind-host", host);
    conf.set("dfs.namenode.http-bind-host", host);
    // Fixed ports: MiniYARNCluster then uses the addresses below instead of
    // overwriting them with localhost:0.
    conf.setBoolean(YarnConfiguration.YARN_MINICLUSTER_FIXED_PORTS, true);
    // MiniYARNCluster copies this into yarn.nodemanager.resource.memory-mb.
    conf.setInt(YarnConfiguration.YARN_MINICLUSTER_NM_PMEM_MB, 8192);
    conf.setInt(YarnConfiguration.NM_VCORES, 4);
    conf.setInt(YarnConfiguration.RM_SCHEDULER_MINIMUM_ALLOCATION_MB, 128);
    conf.setInt(YarnConfiguration.RM_SCHEDULER_MAXIMUM_ALLOCATION_MB, 8192);
    conf.setInt(YarnConfiguration.RM_SCHEDULER_MINIMUM_ALLOCATION_VCORES, 1);
    conf.setInt(YarnConfiguration.RM_SCHEDULER_MAXIMUM_ALLOCATION_VCORES, 4);
    conf.setBoolean(YarnConfiguration.NM_PMEM_CHECK_ENABLED, false);
    conf.setBoolean(YarnConfiguration.NM_VMEM_CHECK_ENABLED, false);
    conf.setFloat(
        YarnConfiguration.NM_MAX_PER_DISK_UTILIZATION_PERCENTAGE, 99.5f);
    conf.setFloat("yarn.scheduler.capacity.maximum-am-resource-percent", 0.5f);
    conf.setBoolean(YarnConfiguration.TIMELINE_SERVICE_ENABLED, false);
    conf.setBoolean(YarnConfiguration.LOG_AGGREGATION_ENABLED, false);
    // NM shutdown waits sleep-delay + process-kill-wait + 1 s for apps.
    conf.setLong(YarnConfiguration.NM_PROCESS_KILL_WAIT_MS, 2000);
    for (Map.Entry<String, String> e : extra.entrySet()) {
      conf.set(e.getKey(), e.getValue());
    }

    // ---- HDFS ----
    int nnPort = Integer.parseInt(opts.getOrDefault("lofn.nn.port", "0"));
    int nnHttpPort = Integer.parseInt(opts.getOrDefault("lofn.nn.http.port", "0"));
    final MiniDFSCluster dfs = new MiniDFSCluster.Builder(conf)
        .nameNodePort(nnPort)
        .nameNodeHttpPort(nnHttpPort)
        .numDataNodes(dataNodes)
        .format(true)
        .build();
    dfs.waitActive();
    nnPort = dfs.getNameNodePort();
    nnHttpPort = dfs.getNameNode().getHttpAddress().getPort();
    final String defaultFs = "hdfs://" + host + ":" + nnPort;
    conf.set(FileSystem.FS_DEFAULT_NAME_KEY, defaultFs);

    FileSystem fs = FileSystem.get(java.net.URI.create(defaultFs), conf);
    fs.mkdirs(new Path("/tmp"));
    fs.setPermission(new Path("/tmp"), new FsPermission((short) 01777));
    fs.mkdirs(new Path("/user"));
    fs.setPermission(new Path("/user"), new FsPermission((short) 0777));

    // ---- YARN ----
    String rmAddr = host + ":" + portOr(opts, "lofn.rm.port", host);
    String schedAddr = host + ":" + portOr(opts, "lofn.rm.scheduler.port", host);
    String trackerAddr = host + ":" + portOr(opts, "lofn.rm.tracker.port", host);
    String adminAddr = host + ":" + portOr(opts, "lofn.rm.admin.port", host);
    String webAddr = host + ":" + portOr(opts, "lofn.rm.webapp.port", host);
    conf.set(YarnConfiguration.RM_HOSTNAME, host);
    conf.set(YarnConfiguration.RM_ADDRESS, rmAddr);
    conf.set(YarnConfiguration.RM_SCHEDULER_ADDRESS, schedAddr);
    conf.set(YarnConfiguration.RM_RESOURCE_TRACKER_ADDRESS, trackerAddr);
    conf.set(YarnConfiguration.RM_ADMIN_ADDRESS, adminAddr);
    conf.set(YarnConfiguration.RM_WEBAPP_ADDRESS, webAddr);

    // nMWebEnabled=false: YARN web apps share Guice's static GuiceFilter
    // pipeline, so an in-process NodeManager web app (started after the RM)
    // takes over the RM's /ws/v1/cluster/* REST API ("controller for v1 not
    // found"). Container logs stay on disk under WORK_DIR.
    final MiniYARNCluster yarn =
        new MiniYARNCluster("lofn", nodeManagers, 1, 1, false);
    yarn.init(conf);
    yarn.start();

    // Stop on SIGTERM/SIGINT from the main thread rather than in a JVM
    // shutdown hook: inside a hook, DataNode.shutdown() fails with
    // "Shutdown in progress, cannot remove a shutdownHook".
    final java.util.concurrent.CountDownLatch stop =
        new java.util.concurrent.CountDownLatch(1);
    for (String sig : new String[] {"TERM", "INT"}) {
      sun.misc.Signal.handle(new sun.misc.Signal(sig), s -> stop.countDown());
    }

    ResourceManager rm = yarn.getResourceManager();
    long deadline = System.currentTimeMillis() + 60_000;
    while (true) {
      int running = (int) rm.getRMContext().getRMNodes().values().stream()
          .filter(n -> n.getState() == NodeState.RUNNING).count();
      if (running >= nodeManagers) {
        break;
      }
      if (System.currentTimeMillis() > deadline) {
        throw new IllegalStateException("NodeManagers did not register: "
            + running + "/" + nodeManagers);
      }
      Thread.sleep(200);
    }

    Configuration rmConf = rm.getConfig();
    // ---- client configuration ----
    Map<String, String> core = new LinkedHashMap<>();
    core.put("fs.defaultFS", defaultFs);
    writeSite(confDir, "core-site.xml", core);

    Map<String, String> hdfs = new LinkedHashMap<>();
    hdfs.put("dfs.namenode.rpc-address", host + ":" + nnPort);
    hdfs.put("dfs.namenode.http-address", host + ":" + nnHttpPort);
    hdfs.put("dfs.webhdfs.enabled", "true");
    hdfs.put("dfs.replication", "1");
    hdfs.put("dfs.permissions.enabled", "false");
    writeSite(confDir, "hdfs-site.xml", hdfs);

    Map<String, String> y = new LinkedHashMap<>();
    y.put(YarnConfiguration.RM_HOSTNAME, host);
    for (String k : new String[] {YarnConfiguration.RM_ADDRESS,
        YarnConfiguration.RM_SCHEDULER_ADDRESS,
        YarnConfiguration.RM_RESOURCE_TRACKER_ADDRESS,
        YarnConfiguration.RM_ADMIN_ADDRESS,
        YarnConfiguration.RM_WEBAPP_ADDRESS}) {
      y.put(k, host + ":" + rmConf.getSocketAddr(k, "0.0.0.0:0", 0).getPort());
    }
    y.put(YarnConfiguration.RM_SCHEDULER_MINIMUM_ALLOCATION_MB,
        rmConf.get(YarnConfiguration.RM_SCHEDULER_MINIMUM_ALLOCATION_MB));
    y.put(YarnConfiguration.RM_SCHEDULER_MAXIMUM_ALLOCATION_MB,
        rmConf.get(YarnConfiguration.RM_SCHEDULER_MAXIMUM_ALLOCATION_MB));
    y.put(YarnConfiguration.RM_SCHEDULER_MAXIMUM_ALLOCATION_VCORES,
        rmConf.get(YarnConfiguration.RM_SCHEDULER_MAXIMUM_ALLOCATION_VCORES));
    writeSite(confDir, "yarn-site.xml", y);

    Map<String, String> mapred = new LinkedHashMap<>();
    mapred.put("mapreduce.framework.name", "yarn");
    writeSite(confDir, "mapred-site.xml", mapred);

    // Full effective configuration, for debugging only.
    try (OutputStream os = new FileOutputStream(new File(work, "effective-conf.xml"))) {
      rmConf.writeXml(os);
    }

    String webRm = y.get(YarnConfiguration.RM_WEBAPP_ADDRESS);
    File env = new File(confDir, "cluster.env");
    try (PrintWriter w = new PrintWriter(env, StandardCharsets.UTF_8)) {
      w.println("export HADOOP_CONF_DIR='" + confDir.getPath() + "'");
      w.println("export YARN_CONF_DIR='" + confDir.getPath() + "'");
      w.println("export LOFN_HDFS_URL='" + defaultFs + "'");
      w.println("export LOFN_WEBHDFS_URL='http://" + host + ":" + nnHttpPort + "'");
      w.println("export LOFN_YARN_RM_URL='http://" + webRm + "'");
      w.println("export LOFN_YARN_RM_ADDRESS='" + y.get(YarnConfiguration.RM_ADDRESS) + "'");
    }
    File ready = new File(work, "ready");
    Files.writeString(ready.toPath(), "ok\n");
    System.err.println("LofnMiniCluster: READY fs=" + defaultFs
        + " webhdfs=http://" + host + ":" + nnHttpPort + " rm=" + webRm);

    stop.await();
    System.err.println("LofnMiniCluster: stopping");
    for (int i = 0; i < nodeManagers; i++) {
      dropPendingLogDeletions(yarn, i);
    }
    try {
      yarn.stop();
    } catch (Throwable t) {
      t.printStackTrace();
    }
    try {
      dfs.shutdown();
    } catch (Throwable t) {
      t.printStackTrace();
    }
    System.err.println("LofnMiniCluster: stopped");
    System.exit(0);
  }
}
