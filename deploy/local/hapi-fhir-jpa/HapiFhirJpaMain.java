/*
 * The EHR peer of fusion's integration tests: a real HAPI FHIR JPA server (FHIR R4) on an in-memory H2 database,
 * served on a loopback port by this small Spring Boot main of ours.
 *
 * Where the pieces come from (all Maven Central, resolved by deploy/local/hapi-fhir-jpa/pom.xml into
 * .cache/hapi-fhir-jpa/lib by `make deps`):
 *   - ca.uhn.hapi.fhir:hapi-fhir-jpaserver-base:8.8.0  HapiJpaConfig (JpaConfig: DAOs, search, paging, transactions),
 *     JpaR4Config (the R4 FhirContext, the generated R4 DAOs and resource providers), JpaBatch2Config
 *   - ca.uhn.hapi.fhir:hapi-fhir-storage-batch2-jobs:8.8.0  Batch2JobsConfig (the jobs JpaConfig's services expect)
 *   - com.h2database:h2:2.3.232  the in-memory database; HAPI's own HapiFhirH2Dialect
 *   - org.springframework.boot:spring-boot-starter-tomcat:3.3.0  the embedded servlet container
 * The bean set follows what HAPI's public JPA starter application wires (github.com/hapifhir/hapi-fhir-jpaserver-starter,
 * StarterJpaConfig / FhirServerConfigCommon), reduced to what a test EHR needs; no code is copied from it.
 *
 * Build and run (the test harness does this once per pytest session):
 *   javac -proc:none -cp '.cache/hapi-fhir-jpa/lib/*' -d .cache/hapi-fhir-jpa/classes deploy/local/hapi-fhir-jpa/HapiFhirJpaMain.java
 *   java -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xmx768m \
 *        -cp '.cache/hapi-fhir-jpa/classes:.cache/hapi-fhir-jpa/lib/*' radcds.ehr.HapiFhirJpaMain PORT
 * FHIR R4 base: http://127.0.0.1:PORT/fhir ; the process prints "HAPI FHIR JPA READY <base>" when it serves.
 */
package radcds.ehr;

import ca.uhn.fhir.batch2.jobs.config.Batch2JobsConfig;
import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.jpa.api.config.ThreadPoolFactoryConfig;
import ca.uhn.fhir.jpa.api.dao.DaoRegistry;
import ca.uhn.fhir.jpa.api.dao.IFhirSystemDao;
import ca.uhn.fhir.jpa.batch2.JpaBatch2Config;
import ca.uhn.fhir.jpa.config.HapiJpaConfig;
import ca.uhn.fhir.jpa.config.r4.JpaR4Config;
import ca.uhn.fhir.jpa.config.util.HapiEntityManagerFactoryUtil;
import ca.uhn.fhir.jpa.model.config.PartitionSettings;
import ca.uhn.fhir.jpa.model.config.SubscriptionSettings;
import ca.uhn.fhir.jpa.model.dialect.HapiFhirH2Dialect;
import ca.uhn.fhir.jpa.provider.JpaCapabilityStatementProvider;
import ca.uhn.fhir.jpa.provider.JpaSystemProvider;
import ca.uhn.fhir.jpa.search.DatabaseBackedPagingProvider;
import ca.uhn.fhir.jpa.subscription.channel.config.SubscriptionChannelConfig;
import ca.uhn.fhir.rest.server.RestfulServer;
import ca.uhn.fhir.rest.server.provider.ResourceProviderFactory;
import ca.uhn.fhir.rest.server.util.ISearchParamRegistry;
import ca.uhn.fhir.rest.server.IncomingRequestAddressStrategy;
import jakarta.persistence.EntityManagerFactory;
import java.util.HashMap;
import java.util.Map;
import javax.sql.DataSource;
import org.apache.commons.dbcp2.BasicDataSource;
import org.hl7.fhir.r4.model.Bundle;
import org.hl7.fhir.r4.model.Meta;
import org.springframework.beans.factory.config.ConfigurableListableBeanFactory;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.SpringBootConfiguration;
import org.springframework.boot.autoconfigure.ImportAutoConfiguration;
import org.springframework.boot.autoconfigure.web.servlet.ServletWebServerFactoryAutoConfiguration;
import org.springframework.boot.context.event.ApplicationReadyEvent;
import org.springframework.boot.web.servlet.ServletRegistrationBean;
import org.springframework.context.ApplicationListener;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Import;
import org.springframework.context.annotation.Primary;
import org.springframework.orm.jpa.JpaTransactionManager;
import org.springframework.orm.jpa.LocalContainerEntityManagerFactoryBean;

@SpringBootConfiguration(proxyBeanMethods = false)
@ImportAutoConfiguration(ServletWebServerFactoryAutoConfiguration.class)
@Import({
	HapiJpaConfig.class,
	JpaR4Config.class,
	ThreadPoolFactoryConfig.class,
	SubscriptionChannelConfig.class,
	JpaBatch2Config.class,
	Batch2JobsConfig.class
})
public class HapiFhirJpaMain {

	public static void main(String[] args) {
		String port = args.length > 0 ? args[0] : "8090";
		SpringApplication app = new SpringApplication(HapiFhirJpaMain.class);
		Map<String, Object> defaults = new HashMap<>();
		defaults.put("server.port", port);
		defaults.put("server.address", "127.0.0.1");
		defaults.put("spring.main.banner-mode", "off");
		defaults.put("spring.main.allow-bean-definition-overriding", "true");
		// HAPI's JPA beans reference each other through fields (the JPA starter sets the same).
		defaults.put("spring.main.allow-circular-references", "true");
		app.setDefaultProperties(defaults);
		app.addListeners((ApplicationListener<ApplicationReadyEvent>) event ->
				System.out.println("HAPI FHIR JPA READY http://127.0.0.1:" + port + "/fhir"));
		app.run(args);
	}

	/** In-memory H2, kept open for the JVM's life (DB_CLOSE_DELAY=-1). */
	@Bean(destroyMethod = "close")
	public BasicDataSource dataSource() {
		BasicDataSource ds = new BasicDataSource();
		ds.setDriverClassName("org.h2.Driver");
		ds.setUrl("jdbc:h2:mem:radcds-ehr;DB_CLOSE_DELAY=-1");
		ds.setUsername("sa");
		ds.setPassword("");
		ds.setMaxTotal(10);
		return ds;
	}

	@Bean
	public JpaStorageSettings storageSettings() {
		JpaStorageSettings settings = new JpaStorageSettings();
		// Tests load data by transaction with client-assigned ids (Patient/ehr-smoker-copd ...).
		settings.setResourceClientIdStrategy(JpaStorageSettings.ClientIdStrategyEnum.ANY);
		settings.setAllowMultipleDelete(true);
		settings.setExpungeEnabled(true);
		return settings;
	}

	@Bean
	public PartitionSettings partitionSettings() {
		return new PartitionSettings();
	}

	@Bean
	public SubscriptionSettings subscriptionSettings() {
		return new SubscriptionSettings();
	}

	@Primary
	@Bean
	public LocalContainerEntityManagerFactoryBean entityManagerFactory(
			ConfigurableListableBeanFactory beanFactory,
			FhirContext fhirContext,
			JpaStorageSettings storageSettings,
			DataSource dataSource) {
		LocalContainerEntityManagerFactoryBean emf =
				HapiEntityManagerFactoryUtil.newEntityManagerFactory(beanFactory, fhirContext, storageSettings);
		Map<String, Object> jpa = new HashMap<>();
		jpa.put("hibernate.dialect", HapiFhirH2Dialect.class.getName());
		jpa.put("hibernate.hbm2ddl.auto", "update");
		jpa.put("hibernate.archive.scanner", "org.hibernate.boot.archive.scan.internal.DisabledScanner");
		jpa.put("hibernate.jdbc.batch_size", "20");
		jpa.put("hibernate.cache.use_query_cache", "false");
		jpa.put("hibernate.cache.use_second_level_cache", "false");
		jpa.put("hibernate.search.enabled", "false");
		jpa.put("hibernate.format_sql", "false");
		jpa.put("hibernate.show_sql", "false");
		emf.setPersistenceUnitName("HAPI_PU");
		emf.setJpaPropertyMap(jpa);
		emf.setDataSource(dataSource);
		return emf;
	}

	@Primary
	@Bean
	public JpaTransactionManager transactionManager(EntityManagerFactory entityManagerFactory) {
		JpaTransactionManager tm = new JpaTransactionManager();
		tm.setEntityManagerFactory(entityManagerFactory);
		return tm;
	}

	/** HAPI's RestfulServer with the JPA resource providers, the system provider (transactions) and paging. */
	@Bean
	public RestfulServer restfulServer(
			FhirContext fhirContext,
			ResourceProviderFactory resourceProviderFactory,
			JpaSystemProvider<Bundle, Meta> systemProvider,
			DatabaseBackedPagingProvider pagingProvider,
			IFhirSystemDao<Bundle, Meta> systemDao,
			JpaStorageSettings storageSettings,
			ISearchParamRegistry searchParamRegistry) {
		RestfulServer server = new RestfulServer(fhirContext);
		server.registerProviders(resourceProviderFactory.createProviders());
		server.registerProvider(systemProvider);
		pagingProvider.setDefaultPageSize(20);
		pagingProvider.setMaximumPageSize(200);
		server.setPagingProvider(pagingProvider);
		server.setServerAddressStrategy(new IncomingRequestAddressStrategy());
		server.setServerConformanceProvider(
				new JpaCapabilityStatementProvider(server, systemDao, storageSettings, searchParamRegistry, null));
		return server;
	}

	@Bean
	public ServletRegistrationBean<RestfulServer> fhirServlet(RestfulServer restfulServer) {
		ServletRegistrationBean<RestfulServer> reg = new ServletRegistrationBean<>(restfulServer, "/fhir/*");
		reg.setLoadOnStartup(1);
		return reg;
	}
}
