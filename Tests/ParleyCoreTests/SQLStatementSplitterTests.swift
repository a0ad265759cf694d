import ParleyCore
import Testing

@Suite struct SQLStatementSplitterTests {
    @Test func splitsAtTopLevelSemicolons() {
        #expect(SQLStatementSplitter.split("CREATE TABLE a (x int); CREATE INDEX i ON a (x);\n") == ["CREATE TABLE a (x int)", "CREATE INDEX i ON a (x)"])
    }

    @Test func keepsSemicolonsInStringsIdentifiersAndComments() {
        let script = """
            -- a comment; with a semicolon
            INSERT INTO t VALUES ('a;b', 'it''s; fine', E'esc\\'; aped');
            SELECT "odd;name" FROM t; /* block; /* nested; */ still comment; */
            SELECT 1
            """
        #expect(SQLStatementSplitter.split(script) == [
            "-- a comment; with a semicolon\nINSERT INTO t VALUES ('a;b', 'it''s; fine', E'esc\\'; aped')",
            "SELECT \"odd;name\" FROM t",
            "/* block; /* nested; */ still comment; */\nSELECT 1",
        ])
    }

    @Test func keepsDollarQuotedBodiesWhole() {
        let script = """
            CREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END; $$ LANGUAGE plpgsql;
            CREATE FUNCTION g() RETURNS text AS $body$ SELECT 'x;$$;y' $body$ LANGUAGE sql;
            SELECT $1;
            """
        let statements = SQLStatementSplitter.split(script)
        #expect(statements.count == 3)
        #expect(statements[0].hasSuffix("$$ LANGUAGE plpgsql"))
        #expect(statements[1].contains("'x;$$;y'"))
        #expect(statements[2] == "SELECT $1")
    }

    @Test func dropsEmptyAndCommentOnlyStatements() {
        #expect(SQLStatementSplitter.split(";;  ;\n-- only a comment\n") == [])
        #expect(SQLStatementSplitter.split("") == [])
    }
}
