// Adds ACL bindings to a Kafka cluster in one admin connection (Kafka's public Admin API).
//
//   java -cp '<kafka libs>/*' deploy/local/ApplyAcls.java <bootstrap> <admin client properties> < bindings
//
// stdin: one ALLOW binding per line, tab-separated: principal, resource type (TOPIC, GROUP, CLUSTER),
// resource name, pattern type (LITERAL, PREFIXED), operation (READ, WRITE, DESCRIBE_CONFIGS, ...).
// Idempotent (an existing binding is left as it is). Exit 0 when every binding is present, 1 with the
// broker's error otherwise. `contract-sync kafka acls --apply` and `stack up --secure` run it
// (services/common/kafka_acls.py writes the lines).

import java.io.BufferedReader;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class ApplyAcls {
    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: ApplyAcls <bootstrap> <admin client properties> < bindings");
            System.exit(2);
        }
        Properties properties = new Properties();
        try (InputStream in = Files.newInputStream(Path.of(args[1]))) {
            properties.load(in);
        }
        properties.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        properties.putIfAbsent(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "60000");
        List<AclBinding> bindings = new ArrayList<>();
        BufferedReader reader = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        for (String line = reader.readLine(); line != null; line = reader.readLine()) {
            if (line.isBlank()) {
                continue;
            }
            String[] field = line.split("\t", -1);
            if (field.length != 5) {
                System.err.println("not a binding (5 tab-separated fields): " + line);
                System.exit(2);
            }
            bindings.add(new AclBinding(
                new ResourcePattern(
                    ResourceType.fromString(field[1]), field[2], PatternType.fromString(field[3])),
                new AccessControlEntry(
                    field[0], "*", AclOperation.fromString(field[4]), AclPermissionType.ALLOW)));
        }
        try (Admin admin = Admin.create(properties)) {
            admin.createAcls(bindings).all().get();
        } catch (ExecutionException error) {
            System.err.println("creating the ACLs failed: " + error.getCause());
            System.exit(1);
        }
        System.out.println(bindings.size() + " ACL bindings present");
    }
}
