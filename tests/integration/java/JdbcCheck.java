// pgjdbc through the shiftguard proxy, driven by tests/integration/test_pgjdbc.py.
//
// Usage: java -cp <dir>:<postgresql.jar> JdbcCheck <jdbc-url> <user> <password> <table> <mode>
//   mode "admin": metadata, PreparedStatement, transactions, CopyManager COPY IN/OUT, errors;
//                 creates <table> and drops it again.
//   mode "user":  current_user, then SELECT from <table> (which the caller did not grant).
//   mode "login": connect and print who we are (used for login failures).
//   mode "pooled": transaction pooling; a PreparedStatement run 12 times (pgjdbc prepares it
//                 server-side from the 5th) while a second connection holds a transaction
//                 every other time, so that the first moves between backend sessions.
//
// Prints one "key=value" line per result (newlines and backslashes in values escaped as \n and
// \\), and "done=true" last when nothing unexpected happened. A failed connection prints
// connect_sqlstate and connect_message and exits 2; any other unexpected failure exits 1.

import java.io.StringReader;
import java.io.StringWriter;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;

import org.postgresql.PGConnection;
import org.postgresql.copy.CopyManager;

public class JdbcCheck {

    static void out(String key, Object value) {
        String text = String.valueOf(value).replace("\\", "\\\\").replace("\n", "\\n");
        System.out.println(key + "=" + text);
    }

    static String one(Connection conn, String sql) throws SQLException {
        try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery(sql)) {
            return rs.next() ? rs.getString(1) : null;
        }
    }

    static String rows(Connection conn, String table) throws SQLException {
        StringBuilder text = new StringBuilder();
        try (Statement st = conn.createStatement();
             ResultSet rs = st.executeQuery("SELECT id, name FROM " + table + " ORDER BY id")) {
            while (rs.next()) {
                if (text.length() > 0) text.append(",");
                text.append(rs.getInt(1)).append(":").append(rs.getString(2));
            }
        }
        return text.toString();
    }

    /** Run sql expecting an error; print its SQLState under key, and whether the connection
     *  still answers afterwards. */
    static void expectError(Connection conn, String key, String sql) throws SQLException {
        try (Statement st = conn.createStatement()) {
            st.execute(sql);
            out(key + "_sqlstate", "none");
        } catch (SQLException e) {
            out(key + "_sqlstate", e.getSQLState());
            out(key + "_message", e.getMessage());
        }
        if (!conn.getAutoCommit()) conn.rollback();
        out(key + "_then", one(conn, "SELECT 'alive'"));
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 5) {
            System.err.println("usage: JdbcCheck <url> <user> <password> <table> <admin|user|login>");
            System.exit(64);
        }
        String url = args[0], user = args[1], password = args[2], table = args[3], mode = args[4];
        Connection conn;
        try {
            conn = DriverManager.getConnection(url, user, password);
        } catch (SQLException e) {
            out("connect_sqlstate", e.getSQLState());
            out("connect_message", e.getMessage());
            System.exit(2);
            return;
        }
        try {
            DatabaseMetaData meta = conn.getMetaData();
            out("product_name", meta.getDatabaseProductName());
            out("product_version", meta.getDatabaseProductVersion());
            out("major_version", meta.getDatabaseMajorVersion());
            out("minor_version", meta.getDatabaseMinorVersion());
            out("current_user", one(conn, "SELECT current_user"));
            if (mode.equals("admin")) admin(conn, table, url);
            else if (mode.equals("user")) user(conn, table);
            else if (mode.equals("pooled")) pooled(conn, url, user, password);
            out("done", true);
        } finally {
            conn.close();
        }
    }

    static void pooled(Connection conn, String url, String user, String password) throws SQLException {
        java.util.Set<String> pids = new java.util.TreeSet<>();
        long sum = 0;
        try (Connection other = DriverManager.getConnection(url, user, password);
             PreparedStatement ps = conn.prepareStatement("SELECT ?::int * 2, pg_backend_pid()")) {
            other.setAutoCommit(false);
            for (int i = 1; i <= 12; i++) {
                if (i % 2 == 0) one(other, "SELECT 1");  // holds a session until the commit below
                ps.setInt(1, i);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    sum += rs.getLong(1);
                    pids.add(rs.getString(2));
                }
                if (i % 2 == 0) other.commit();
            }
        }
        out("pooled_sum", sum);
        out("pooled_sessions", pids.size());
    }

    static void user(Connection conn, String table) throws SQLException {
        out("session_user", one(conn, "SELECT session_user"));
        expectError(conn, "ungranted", "SELECT * FROM " + table);
        try (PreparedStatement ps = conn.prepareStatement("SELECT count(*) FROM " + table + " WHERE a = ?")) {
            ps.setInt(1, 1);
            ps.executeQuery();
            out("ungranted_prepared_sqlstate", "none");
        } catch (SQLException e) {
            out("ungranted_prepared_sqlstate", e.getSQLState());
        }
        out("ungranted_prepared_then", one(conn, "SELECT 'alive'"));
    }

    static void admin(Connection conn, String table, String url) throws Exception {
        try (Statement st = conn.createStatement()) {
            st.execute("CREATE TABLE " + table + " (id int PRIMARY KEY, name text)");
        }
        StringBuilder columns = new StringBuilder();
        try (ResultSet rs = conn.getMetaData().getColumns(null, "public", table, null)) {
            while (rs.next()) {
                if (columns.length() > 0) columns.append(",");
                columns.append(rs.getString("COLUMN_NAME")).append(":").append(rs.getString("TYPE_NAME"));
            }
        }
        out("metadata_columns", columns);

        // PreparedStatement with parameters, run often enough for the driver to switch to a
        // named server-side statement (prepareThreshold, default 5).
        try (PreparedStatement ins = conn.prepareStatement("INSERT INTO " + table + " VALUES (?, ?)")) {
            for (int i = 1; i <= 6; i++) {
                ins.setInt(1, i);
                ins.setString(2, i == 3 ? "it's" : "row" + i);
                ins.executeUpdate();
            }
        }
        try (PreparedStatement ps = conn.prepareStatement(
                "SELECT name, ? + 1, pg_typeof(?)::text FROM " + table + " WHERE id = ?")) {
            ps.setInt(1, 41);
            ps.setString(2, "x");
            ps.setInt(3, 3);
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                out("prepared_row", rs.getString(1) + "|" + rs.getInt(2) + "|" + rs.getString(3));
            }
        }
        try (Statement st = conn.createStatement()) {
            st.execute("DELETE FROM " + table);
        }

        // transactions
        conn.setAutoCommit(false);
        try (PreparedStatement ins = conn.prepareStatement("INSERT INTO " + table + " VALUES (?, ?)")) {
            ins.setInt(1, 1);
            ins.setString(2, "committed");
            ins.executeUpdate();
            conn.commit();
            ins.setInt(1, 2);
            ins.setString(2, "rolled back");
            ins.executeUpdate();
            out("in_transaction_rows", rows(conn, table));
            conn.rollback();
        }
        out("after_rollback_rows", rows(conn, table));
        conn.commit();
        expectError(conn, "in_transaction_error", "INSERT INTO " + table + " VALUES (1, 'duplicate')");
        conn.setAutoCommit(true);

        // COPY through the CopyManager
        CopyManager copy = conn.unwrap(PGConnection.class).getCopyAPI();
        long copiedIn = copy.copyIn("COPY " + table + " FROM STDIN WITH (FORMAT csv)",
                new StringReader("10,ten\n11,\"with, comma\"\n12,\n"));
        out("copy_in_count", copiedIn);
        StringWriter copied = new StringWriter();
        long copiedOut = copy.copyOut("COPY (SELECT id, name FROM " + table + " ORDER BY id) TO STDOUT", copied);
        out("copy_out_count", copiedOut);
        out("copy_out", copied.toString());
        try {
            copy.copyIn("COPY " + table + " FROM STDIN", new StringReader("13\tok\nnot-a-number\tbad\n"));
            out("copy_in_error_sqlstate", "none");
        } catch (SQLException e) {
            out("copy_in_error_sqlstate", e.getSQLState());
        }
        out("copy_in_error_then", one(conn, "SELECT count(*) FROM " + table));

        // errors
        expectError(conn, "division_error", "SELECT 1/0");
        expectError(conn, "syntax_error", "SELEC 1");
        expectError(conn, "missing_table_error", "SELECT * FROM missing_" + table);

        // a server-side cursor read in batches (Execute with a row limit, PortalSuspended)
        conn.setAutoCommit(false);
        try (PreparedStatement ps = conn.prepareStatement("SELECT n FROM generate_series(1, ?) n")) {
            ps.setFetchSize(3);
            ps.setInt(1, 10);
            long sum = 0, count = 0;
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) { sum += rs.getInt(1); count++; }
            }
            out("fetch_size_rows", count + "/" + sum);
        }
        conn.commit();
        conn.setAutoCommit(true);

        // a query timeout: the driver sends a CancelRequest on a new connection
        long started = System.nanoTime();
        try (Statement st = conn.createStatement()) {
            st.setQueryTimeout(1);
            st.execute("SELECT pg_sleep(30)");
            out("timeout_sqlstate", "none");
        } catch (SQLException e) {
            out("timeout_sqlstate", e.getSQLState());
        }
        out("timeout_seconds", (System.nanoTime() - started) / 1_000_000_000L);
        out("timeout_then", one(conn, "SELECT 'alive'"));

        // CREATE USER / DROP USER through this driver, and the new user logging in with it
        String name = table + "_user";
        try (Statement st = conn.createStatement()) {
            out("create_user_count", st.executeUpdate("CREATE USER " + name + " PASSWORD 'Secret123'"));
        }
        try (Connection as = DriverManager.getConnection(url, name, "Secret123")) {
            out("created_user_login", one(as, "SELECT current_user"));
        }
        try (Statement st = conn.createStatement()) {
            out("drop_user_count", st.executeUpdate("DROP USER " + name));
        }
        try (Connection as = DriverManager.getConnection(url, name, "Secret123")) {
            out("dropped_user_login_sqlstate", "none");
        } catch (SQLException e) {
            out("dropped_user_login_sqlstate", e.getSQLState());
        }

        try (Statement st = conn.createStatement()) {
            st.execute("DROP TABLE " + table);
        }
    }
}
