import org.codelibs.opensearch.runner.OpenSearchRunner;

/**
 * Starts one OpenSearch node as OpenSearchRunner's own main does, with two differences the
 * secured test node needs: the HTTP port is exactly the one asked for (the runner's main caps
 * it at 9299 and moves on to the next free one), and a failure to start is printed instead of
 * an exit status 1 without a word. Run from source by tests/support/secured_search.py.
 */
public class SecuredRunner {
    public static void main(String[] args) throws Exception {
        final OpenSearchRunner runner = new OpenSearchRunner();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                runner.close();
            } catch (Exception e) {
                e.printStackTrace();
            }
        }));
        runner.setMaxHttpPort(-1);
        try {
            runner.build(args);
        } catch (Throwable t) {
            t.printStackTrace();
            System.exit(1);
        }
        while (!runner.isClosed()) {
            Thread.sleep(1000);
        }
    }
}
